"""Process settings that make CPU training steps cheaper (applied at the first training step).

A batch's token count changes from batch to batch, and with it the shape of every matrix product:
1. oneDNN (torch's bf16 products on CPU) builds a JIT kernel per shape and keeps 1,024 of them, so
   an epoch's shapes evict each other and every batch pays for new kernels. The cache is widened
   to `ONEDNN_CACHE_CAPACITY`; oneDNN reads the variable when it builds its first kernel (before
   training's first bf16 product, unless other code in the process ran one earlier).
2. glibc's malloc maps and unmaps large tensors (up to 32 MiB) afresh, so their pages fault in
   every step. Raising its mmap and trim thresholds keeps freed blocks for reuse: the process
   holds up to `MALLOC_TRIM_THRESHOLD` of freed memory instead of returning it to the system.
Profile and measurements: results/cpu_profile/README.md. Settings the user made are kept: the
variable, glibc's threshold tunables, or another allocator preloaded.
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

#: environment settings of glibc's thresholds, and allocators that replace glibc's malloc
MALLOC_THRESHOLD_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
MALLOC_THRESHOLD_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")
PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def user_set_malloc(env: Mapping[str, str]) -> Optional[str]:
    """The user's own malloc threshold setting or preloaded allocator, or None."""
    for name in MALLOC_THRESHOLD_ENV:
        if name in env:
            return name
    for tunable in MALLOC_THRESHOLD_TUNABLES:
        if tunable in env.get("GLIBC_TUNABLES", ""):
            return f"GLIBC_TUNABLES {tunable}"
    for allocator in PRELOADED_ALLOCATORS:
        if allocator in env.get("LD_PRELOAD", ""):
            return f"LD_PRELOAD {allocator}"
    return None


def widen_onednn_cache(env: MutableMapping[str, str]) -> str:
    """Set oneDNN's primitive cache capacity unless the user set it; says which."""
    for name in (ONEDNN_CACHE_ENV, ONEDNN_CACHE_ENV_OLD):
        if name in env:
            return f"kept your {name}={env[name]}"
    env[ONEDNN_CACHE_ENV] = str(ONEDNN_CACHE_CAPACITY)
    return f"{ONEDNN_CACHE_ENV}={ONEDNN_CACHE_CAPACITY}"


def keep_freed_memory(env: Mapping[str, str]) -> str:
    """Raise glibc malloc's mmap and trim thresholds unless the user set them (or the C library is
    not glibc); says what was done."""
    users = user_set_malloc(env)
    if users:
        return f"kept your malloc settings ({users})"
    if platform.libc_ver()[0] != "glibc":
        return "malloc left alone (not glibc)"
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError) as err:  # no loadable C library, or no mallopt in it
        return f"malloc left alone ({err})"
    done = [f"{name}={value}" for name, param, value in (
        ("mmap_threshold", M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD),
        ("trim_threshold", M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)) if mallopt(param, value) == 1]
    return f"malloc {' '.join(done)}" if done else "malloc left alone (mallopt refused both thresholds)"


def tune_cpu_runtime(env: MutableMapping[str, str] = os.environ) -> List[str]:
    """Apply both settings to this process; what each one did."""
    return [widen_onednn_cache(env), keep_freed_memory(env)]
