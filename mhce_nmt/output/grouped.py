"""Scores of each row against the children of its own prefix: one function, a way per device.

out[m, c] = <z[row_m], table[parents[m] * K + c]> (+ bias[...]) for M rows: MHE's level h > 1.
`grouped_child_scores` picks how it runs (`choose_path`), here and nowhere else:

  device  autograd  dtype              way                       file
  cpu     any       any                host-planned matmuls      grouped_cpu.py
  cuda    yes       bf16 (*)           one grouped GEMM          grouped_device.py
  cuda    yes       otherwise          gathered rows, chunked    grouped_device.py
  cuda    no        bf16 (*), R*e > limit  one grouped GEMM      grouped_device.py
  cuda    no        otherwise          dense product + gather    grouped_device.py
(*) where F.grouped_mm is one kernel (sm90 or newer) and the level has < 1,024 prefixes.

Nothing on the accelerator rows reads a value back to the host. Under torch.autocast the
products run in the autocast dtype (as autocast's own matmuls do); gradients return in the
inputs' dtypes.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .grouped_cpu import planned_child_scores
from .grouped_device import dense_child_scores, gathered_child_scores, grouped_mm_child_scores

PATHS = ("planned", "grouped_mm", "gathered", "dense")

#: Decoding without autograd on an accelerator takes the dense product up to this many table
#: values (R * e; 2**25 = V 65,536 at e = 512): a single GEMM over the table costs less than a
#: grouped launch there. Larger bf16 tables take the grouped GEMM.
DENSE_DECODE_MAX_ELEMENTS = 1 << 25


_forced: Optional[str] = None


@contextlib.contextmanager
def forced_path(path: Optional[str]) -> Iterator[None]:
    """Run every grouped_child_scores call inside on `path` (benchmarks compare the ways; None =
    choose_path as usual)."""
    global _forced
    if path is not None and path not in PATHS:
        raise ValueError(f"unknown grouped path {path!r}; choose one of {', '.join(PATHS)}")
    before, _forced = _forced, path
    try:
        yield
    finally:
        _forced = before


#: torch's CUDA grouped-GEMM kernel takes fewer groups than this (more: the gathered or dense way)
GROUPED_MM_MAX_GROUPS = 1024


def fast_grouped_mm(device: torch.device) -> bool:
    """Whether F.grouped_mm is one device-side kernel here: torch has it and the GPU is sm90 or
    newer (elsewhere torch loops over the groups after reading their ends back: a sync). The meta
    device counts as one, so the CPU tests run that way without values."""
    if not hasattr(F, "grouped_mm"):
        return False
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (9, 0)
    return device.type == "meta"


def choose_path(device: torch.device, dtype: torch.dtype, table_elements: int, groups: int,
                needs_grad: bool) -> str:
    """The way `grouped_child_scores` runs (see the module docstring): every device that is not
    the CPU takes a sync-free way; the grouped GEMM where it is one kernel for bf16."""
    if device.type == "cpu":
        return "planned"
    grouped = dtype == torch.bfloat16 and groups < GROUPED_MM_MAX_GROUPS and fast_grouped_mm(device)
    if needs_grad:
        return "grouped_mm" if grouped else "gathered"
    return "grouped_mm" if grouped and table_elements > DENSE_DECODE_MAX_ELEMENTS else "dense"


def grouped_child_scores(z: Tensor, parents: Tensor, table: Tensor, bias: Optional[Tensor],
                         k: int, rows: Optional[Tensor] = None, cap: Optional[int] = None,
                         path: Optional[str] = None) -> Tensor:
    """z (N, e), parents (M,), table (R, e), bias (R,) or None -> (M, K) in the input row order.

    Row m uses z[m] (N = M), or z[rows[m]] when `rows` (M,) is given: that saves gathering the
    states of (row, parent) pairs first. Children past the end of the table (the partial last
    group) get arbitrary finite scores: callers mask them. cap: the CPU planner's rows per prefix
    (None = its cost model). path: one of PATHS to force a way (tests, benchmarks); None =
    `choose_path`.
    """
    device_type = z.device.type
    # under autocast: one dtype for the products, as autocast's own matmuls
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        z, table = z.to(dtype), table.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        with torch.autocast(device_type, enabled=False):
            return grouped_child_scores(z, parents, table, bias, k, rows, cap, path)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (z, table, bias))
    path = path or _forced or choose_path(z.device, z.dtype, table.numel(), -(-table.size(0) // k), needs_grad)
    if path == "planned":
        return planned_child_scores(z, parents, table, bias, k, rows, cap)
    if path == "grouped_mm":
        return grouped_mm_child_scores(z, parents, table, bias, k, rows)
    if path == "gathered":
        return gathered_child_scores(z, parents, table, bias, k, rows)
    if path == "dense":
        return dense_child_scores(z, parents, table, bias, k, rows)
    raise ValueError(f"grouped_child_scores: unknown path {path!r}; choose one of {', '.join(PATHS)}")
