"""Process settings that make CPU training steps cheaper (applied once, when training starts).

A batch's token count changes from batch to batch, and with it the shape of every matrix product:
1. oneDNN (torch's bf16 products on CPU) builds a JIT kernel per shape and keeps 1,024 of them, so
   an epoch's shapes evict each other and every batch pays for new kernels. The cache is widened
   to `ONEDNN_CACHE_CAPACITY`; oneDNN reads the variable when it creates its first primitive.
2. glibc's malloc maps and unmaps each large tensor afresh (page faults every step). Raising its
   mmap and trim thresholds keeps freed blocks for reuse.
Profile and probe: results/cpu_profile/README.md. A value the user set (the environment variable,
GLIBC_TUNABLES or MALLOC_* settings of malloc) is kept.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import List, Mapping, MutableMapping, Optional

ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_ENV_OLD = "DNNL_PRIMITIVE_CACHE_CAPACITY"  # oneDNN's former name, still honoured
ONEDNN_CACHE_CAPACITY = 65536  # entries; an epoch of the demo makes a few thousand shapes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
MALLOC_MMAP_THRESHOLD = 32 << 20  # bytes: glibc's largest allowed value (64-bit)
MALLOC_TRIM_THRESHOLD = 1 << 30  # bytes of free heap top kept before giving memory back


def user_set_malloc(env: Mapping[str, str]) -> bool:
    """True when the environment already tunes glibc's malloc (or swaps the allocator)."""
    return ("malloc" in env.get("GLIBC_TUNABLES", "") or "LD_PRELOAD" in env
            or any(name.startswith("MALLOC_") for name in env))


def widen_onednn_cache(env: MutableMapping[str, str]) -> Optional[str]:
    """Set oneDNN's primitive cache capacity unless the user set it; what was set, or None."""
    if ONEDNN_CACHE_ENV in env or ONEDNN_CACHE_ENV_OLD in env:
        return None
    env[ONEDNN_CACHE_ENV] = str(ONEDNN_CACHE_CAPACITY)
    return f"{ONEDNN_CACHE_ENV}={ONEDNN_CACHE_CAPACITY}"


def keep_freed_memory(env: Mapping[str, str]) -> Optional[str]:
    """Raise glibc malloc's mmap and trim thresholds unless the user tuned malloc; what was set,
    or None (another libc, or the user's settings)."""
    if user_set_malloc(env) or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not (libc.mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
            and libc.mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)):
        return None
    return f"malloc mmap_threshold={MALLOC_MMAP_THRESHOLD} trim_threshold={MALLOC_TRIM_THRESHOLD}"


def tune_cpu_runtime(env: MutableMapping[str, str] = os.environ) -> List[str]:
    """Apply both settings to this process; the list of what was set (empty if nothing was)."""
    return [done for done in (widen_onednn_cache(env), keep_freed_memory(env)) if done]
