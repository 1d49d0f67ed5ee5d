"""Where a record came from: the code's commit (and whether the tree differed from it), the
command that ran, and the machine in hostname-free facts (CPU model, its bf16 support, threads).

Every training, decoding and benchmark record carries one of these, so a number can be traced to
the code and the machine that made it. Torch-free: a record's origin is read without importing
the model code.
"""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
#: what a model's numbers depend on: a change under these paths makes the tree "dirty"
CODE_PATHS = ("mhce_nmt", "recipes", "scripts", "Makefile", "pyproject.toml")
#: set where the code travels without its git history (a copy sent to a GPU machine): "<commit>[+changes]"
VERSION_VARIABLE = "MHCE_CODE_VERSION"


def git(*args: str) -> str:
    """A git command's stdout in the repository ('' where git or the history is missing)."""
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def code_commit() -> tuple[str, bool]:
    """(commit, dirty): HEAD's hash and whether tracked or new files under CODE_PATHS differ from it.
    Without git history: $MHCE_CODE_VERSION ('<commit>' or '<commit>+changes'), else ('unknown', True)."""
    commit = git("rev-parse", "HEAD")
    if not commit:
        version = os.environ.get(VERSION_VARIABLE, "")
        return (version.removesuffix("+changes"), version.endswith("+changes")) if version else ("unknown", True)
    return commit, bool(git("status", "--porcelain", "--", *CODE_PATHS))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_bf16() -> str:
    """'amx', 'avx512_bf16' or 'none': the CPU's native bf16 matrix support (Linux flags)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in
                      Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    return "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "none"


def threads() -> int:
    """Threads a torch process here computes with: $OMP_NUM_THREADS where set, else the usable cores."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def origin(command: Sequence[str] | None = None) -> dict[str, object]:
    """The record's origin: commit, dirty, the command (default: this process's own, `-m module` kept), CPU model,
    its bf16 support, threads and the Python version. No hostname."""
    commit, dirty = code_commit()
    ran = list(command) if command is not None else [Path(sys.executable).name, *sys.orig_argv[1:]]
    return {"commit": commit, "dirty": dirty, "command": shlex.join(ran), "cpu": cpu_model(),
            "cpu_bf16": cpu_bf16(), "threads": threads(), "python": platform.python_version()}
