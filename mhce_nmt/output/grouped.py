"""Scores of each row against the children of its own prefix, grouped by prefix.

out[m, c] = <z[m], table[parents[m] * K + c]> (+ bias), for M rows. Rows are sorted by prefix
and each distinct prefix costs one (rows_u x e) @ (e x K) matmul (addmm with the bias) that reads
its K table rows in place: a contiguous slice, never a gathered copy. A custom autograd function
does the backward the same way: each group's weight gradient is written by one matmul straight
into its slice of a single (R, e) gradient, and only the rows of absent groups are zeroed. So
no (M x K x e) or (groups x K x e) tensor, no second (R, e) tensor and no per-group autograd
node is ever made; the cost is the matmuls plus reading the touched table rows (twice) and
writing the dense (R, e) gradient once.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def _new_weight_grad(table: Tensor) -> Tensor:
    """Uninitialised (R, e) gradient buffer (fairseq frees grads every step, so this is fresh)."""
    return torch.empty_like(table, memory_format=torch.contiguous_format)


class _Plan:
    """Rows sorted by parent: the permutation, its inverse, and each distinct parent's row count.

    Parents p < full = R // K own K whole table rows [p*K, p*K + K); a parent >= full is the
    partial last group, whose child rows past the table's end are clamped to R - 1.
    """

    def __init__(self, parents: Tensor, k: int, rows: int):
        self.order = torch.argsort(parents)
        self.inverse = torch.empty_like(self.order)
        self.inverse[self.order] = torch.arange(self.order.numel(), device=parents.device)
        uniq, counts = torch.unique_consecutive(parents.index_select(0, self.order), return_counts=True)
        self.uniq = uniq
        self.counts = counts
        self.parents: List[int] = uniq.tolist()
        self.sizes: List[int] = counts.tolist()
        self.k = k
        self.table_rows = rows
        self.full = rows // k

    def partial_rows(self, parent: int, device: torch.device) -> Tensor:
        """Table rows of the children of a parent >= full, clamped to the table."""
        lo = parent * self.k
        return torch.arange(lo, lo + self.k, device=device).clamp_(max=self.table_rows - 1)

    def whole_groups(self, table: Tensor) -> List[Tensor]:
        """Views (K, ...) of the table rows of parents 0..full-1 (no copy)."""
        return list(table[: self.full * self.k].view(self.full, self.k, *table.shape[1:]).unbind(0))


class _GroupedChildScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, table: Tensor, bias: Optional[Tensor], parents: Tensor, k: int,
                rows: Optional[Tensor]) -> Tensor:
        plan = _Plan(parents, k, table.size(0))
        src = plan.order if rows is None else rows.index_select(0, plan.order)
        zs = z.index_select(0, src)  # (M, e), sorted by parent
        out_sorted = zs.new_empty(zs.size(0), k)
        weights = plan.whole_groups(table)
        biases = None if bias is None else plan.whole_groups(bias)
        z_chunks, out_chunks = zs.split(plan.sizes), out_sorted.split(plan.sizes)

        for parent, z_g, out_g in zip(plan.parents, z_chunks, out_chunks):
            if parent < plan.full:
                w = weights[parent]
                b = None if biases is None else biases[parent]
            else:
                idx = plan.partial_rows(parent, z.device)
                w = table.index_select(0, idx)
                b = None if bias is None else bias.index_select(0, idx)
            if b is None:
                torch.mm(z_g, w.t(), out=out_g)
            else:
                torch.addmm(b, z_g, w.t(), out=out_g)
        ctx.plan = plan
        ctx.z_rows = z.size(0)
        ctx.has_bias = bias is not None
        ctx.rows_given = rows is not None
        ctx.save_for_backward(zs, table, src)
        return out_sorted.index_select(0, plan.inverse)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        zs, table, src = ctx.saved_tensors
        plan: _Plan = ctx.plan
        k = plan.k
        need_z, need_table, need_bias = ctx.needs_input_grad[:3]
        go = grad_out.index_select(0, plan.order).to(zs.dtype)  # sorted rows, contiguous
        grad_z = grad_table = grad_bias = None
        grad_zs = zs.new_empty(zs.shape) if need_z else None
        weights = plan.whole_groups(table)
        if need_table:
            grad_table = _new_weight_grad(table)
            grad_groups = plan.whole_groups(grad_table)
            # rows of whole groups that no row of this batch touched are zero; the rest is
            # written exactly once by its group's matmul below
            seen = torch.zeros(plan.full, dtype=torch.bool)
            present = [p for p in plan.parents if p < plan.full]
            seen[present] = True
            absent = (~seen).nonzero().squeeze(1).to(table.device)
            if absent.numel():
                grad_table[: plan.full * k].view(plan.full, k, -1).index_fill_(0, absent, 0)
            if plan.full * k < table.size(0):
                grad_table[plan.full * k:].zero_()
        go_chunks = go.split(plan.sizes)
        zs_chunks = zs.split(plan.sizes)
        gzs_chunks = grad_zs.split(plan.sizes) if need_z else [None] * len(plan.sizes)
        for parent, go_g, z_g, gz_g in zip(plan.parents, go_chunks, zs_chunks, gzs_chunks):
            idx = None if parent < plan.full else plan.partial_rows(parent, zs.device)
            if need_z:
                w = weights[parent] if idx is None else table.index_select(0, idx)
                torch.mm(go_g, w, out=gz_g)
            if need_table:
                if idx is None:
                    torch.mm(go_g.t(), z_g, out=grad_groups[parent])
                else:  # clamped rows repeat: accumulate like index_select's backward
                    grad_table.index_add_(0, idx, go_g.t() @ z_g)
        if need_z:
            if not ctx.rows_given:  # src is a permutation of z's rows
                grad_z = grad_zs.index_select(0, plan.inverse)
            else:
                grad_z = grad_zs.new_zeros(ctx.z_rows, grad_zs.size(1)).index_add_(0, src, grad_zs)
        if need_bias and ctx.has_bias:
            segment = torch.repeat_interleave(
                torch.arange(plan.uniq.numel(), device=go.device), plan.counts)
            per_group = go.new_zeros(plan.uniq.numel(), k).index_add_(0, segment, go)
            child_rows = (plan.uniq.unsqueeze(1) * k + torch.arange(k, device=go.device))
            child_rows = child_rows.clamp_(max=table.size(0) - 1).reshape(-1)
            grad_bias = go.new_zeros(table.size(0)).index_add_(0, child_rows, per_group.reshape(-1))
        return grad_z, grad_table, grad_bias, None, None, None


def grouped_child_scores(z: Tensor, parents: Tensor, table: Tensor, bias: Optional[Tensor],
                         k: int, rows: Optional[Tensor] = None) -> Tensor:
    """z (N, e), parents (M,), table (R, e), bias (R,) or None -> (M, K) in the input row order.

    Row m uses z[m] (N = M), or z[rows[m]] when `rows` (M,) is given: that saves gathering the
    states of (row, parent) pairs first. Child rows past the end of the table (the partial last
    group) are clamped; callers mask them.
    """
    return _GroupedChildScores.apply(z, table, bias, parents, k, rows)
