"""The accelerator ways of `grouped.grouped_child_scores`: nothing read back to the host.

out[m, c] = <z[m], table[parents[m] * K + c]> (+ bias[...]), M rows, K children per prefix.
No shape, loop count or index here depends on tensor values, so a CUDA stream never waits for
the host (the CPU planner's `.tolist()` is a sync per level). Three ways, all exact:
- grouped_mm_child_scores: rows sorted by prefix on the device, group ends by searchsorted,
  then ONE `F.grouped_mm` against the table viewed as (P, K, e), backward by autograd. On CUDA
  it is one CUTLASS kernel for bf16 (sm90); its strides must be multiples of 16 bytes, so K
  and e are zero-padded to a multiple of 16 / itemsize.
- gathered_child_scores: any dtype. Each row's K table rows are gathered and multiplied in
  chunks of a fixed number of rows; the backward recomputes the gathers and scatters with
  index_add_. It reads M * K * e table values per pass (memory-bound): the price of fp32/fp16,
  which the grouped-GEMM kernel does not take.
- dense_child_scores (for decoding; plain autograd): one (N, P*K) product of the distinct state rows
  with the whole table, then each (row, prefix)'s K scores are gathered. That is the dense
  softmax step's own GEMM, so it is never much slower than it.
Children past the end of the table (the partial last prefix) score 0 (plus no bias) in the grouped
GEMM and the dense way, and the last row's score in the gathered way, as in the CPU planner, which
clamps them to it. Callers mask those children either way.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

#: gathered_child_scores works on chunks of at most this many gathered table values (rows * K * e)
GATHER_CHUNK_ELEMENTS = 1 << 26


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _child_rows(parents: Tensor, k: int, table_rows: int) -> Tensor:
    """parents (M,) -> (M, K) table rows of their children, clamped to the table."""
    return (parents.unsqueeze(1) * k + torch.arange(k, device=parents.device)).clamp_(max=table_rows - 1)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous (grouped_mm's backward
    rejects the stride-0 gradients that sum() and expand() give)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def grouped_mm_child_scores(z: Tensor, parents: Tensor, table: Tensor, bias: Optional[Tensor], k: int,
                            rows: Optional[Tensor] = None) -> Tensor:
    """z (N, e), parents (M,), table (R, e), bias (R,) or None -> (M, K), by one grouped GEMM.

    Sorted rows s: out_s = z[src_s] @ W[parent_s]^T with W = table viewed as (P, K, e), P = ceil(R/K);
    group p owns sorted rows [ends[p-1], ends[p]), ends = searchsorted(sorted parents, 0..P-1).
    """
    m, (table_rows, e) = parents.numel(), table.shape
    if m == 0:
        return z.new_zeros(0, k)
    prefixes = -(-table_rows // k)
    align = max(1, 16 // z.element_size())
    k_pad, e_pad = _round_up(k, align), _round_up(e, align)
    weights = table  # (P, K', e') below, zeros in the padding; no copy where nothing is padded
    if e_pad != e or prefixes * k != table_rows:
        weights = F.pad(weights, (0, e_pad - e, 0, prefixes * k - table_rows))
    weights = weights.view(prefixes, k, e_pad)
    if k_pad != k:
        weights = F.pad(weights, (0, 0, 0, k_pad - k))
    order = torch.argsort(parents)
    sorted_parents = parents.index_select(0, order)
    ends = torch.searchsorted(sorted_parents, torch.arange(prefixes, device=parents.device),
                              right=True).to(torch.int32)  # (P,) end of each prefix's rows
    states = z.index_select(0, order if rows is None else rows.index_select(0, order))
    if e_pad != e:
        states = F.pad(states, (0, e_pad - e))  # (M, e')
    scores = _ContiguousGrad.apply(F.grouped_mm(states, weights.transpose(1, 2), offs=ends))[:, :k]
    if bias is not None:
        scores = scores + F.pad(bias, (0, prefixes * k - table_rows)).view(prefixes, k).index_select(0, sorted_parents)
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(m, device=order.device))
    return scores.index_select(0, inverse)  # (M, K) back in the input row order


def _chunks(m: int, k: int, e: int):
    step = max(1, GATHER_CHUNK_ELEMENTS // max(1, k * e))
    return [slice(i, min(i + step, m)) for i in range(0, m, step)]


class _GatheredChildScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, table: Tensor, bias: Optional[Tensor], parents: Tensor, k: int,
                rows: Optional[Tensor]) -> Tensor:
        src = torch.arange(parents.numel(), device=z.device) if rows is None else rows
        out = z.new_empty(parents.numel(), k)
        for part in _chunks(parents.numel(), k, table.size(1)):
            child = _child_rows(parents[part], k, table.size(0))  # (c, K)
            weights = table.index_select(0, child.view(-1)).view(*child.shape, -1)  # (c, K, e)
            torch.bmm(weights, z.index_select(0, src[part]).unsqueeze(2), out=out[part].unsqueeze(2))
            if bias is not None:
                out[part] += bias.index_select(0, child.view(-1)).view(child.shape)
        ctx.k, ctx.has_bias = k, bias is not None
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.save_for_backward(z, table, parents, src)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        z, table, parents, src = ctx.saved_tensors
        need_z, need_table, need_bias = ctx.needs_input_grad[:3]
        grad_out = grad_out.to(z.dtype)
        grad_z = torch.zeros_like(z) if need_z else None
        grad_table = torch.zeros_like(table) if need_table else None
        grad_bias = grad_out.new_zeros(table.size(0), dtype=ctx.bias_dtype) if need_bias and ctx.has_bias else None
        for part in _chunks(parents.numel(), ctx.k, table.size(1)):
            child = _child_rows(parents[part], ctx.k, table.size(0)).view(-1)  # (c*K,)
            go = grad_out[part]  # (c, K)
            states = z.index_select(0, src[part])  # (c, e)
            if need_z:
                weights = table.index_select(0, child).view(go.size(0), ctx.k, -1)
                grad_z.index_add_(0, src[part], torch.bmm(go.unsqueeze(1), weights).squeeze(1))
            if need_table:
                grad_table.index_add_(0, child, (go.unsqueeze(2) * states.unsqueeze(1)).view(child.numel(), -1))
            if grad_bias is not None:
                grad_bias.index_add_(0, child, go.reshape(-1).to(grad_bias.dtype))
        return grad_z, grad_table, grad_bias, None, None, None


def gathered_child_scores(z: Tensor, parents: Tensor, table: Tensor, bias: Optional[Tensor], k: int,
                          rows: Optional[Tensor] = None) -> Tensor:
    """z (N, e), parents (M,), table (R, e), bias (R,) or None -> (M, K): out[m] = W_m @ z[src_m]
    with W_m (K, e) the gathered rows of parents[m]'s children, in chunks of fixed size."""
    return _GatheredChildScores.apply(z, table, bias, parents, k, rows)


def dense_child_scores(z: Tensor, parents: Tensor, table: Tensor, bias: Optional[Tensor], k: int,
                       rows: Optional[Tensor] = None) -> Tensor:
    """(M, K) from one dense (N, R) product: all[n] = table @ z[n] (+ bias), then
    out[m] = all[src_m, parents[m]*K : parents[m]*K + K] (the cost of a full softmax's GEMM)."""
    table_rows = table.size(0)
    prefixes = -(-table_rows // k)
    every = z @ table.t() if bias is None else torch.addmm(bias, z, table.t())  # (N, R)
    every = F.pad(every, (0, prefixes * k - table_rows)).view(z.size(0), prefixes, k)
    src = torch.arange(parents.numel(), device=z.device) if rows is None else rows
    return every[src, parents]
