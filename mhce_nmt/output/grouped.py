"""Scores of each row against the children of its own prefix, grouped by prefix.

out[m, c] = <z[m], table[parents[m] * K + c]> (+ bias), for M rows. Rows are sorted by prefix
and each distinct prefix costs one (rows_u x e) @ (e x K) matmul, so memory stays O(M x K): no
(M x K x e) weight copy is ever gathered, and the table is indexed once (one dense gradient).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def grouped_child_scores(z: Tensor, parents: Tensor, table: Tensor, bias: Optional[Tensor],
                         k: int) -> Tensor:
    """z (M, e), parents (M,), table (R, e), bias (R,) or None -> (M, K) in the input row order.

    Child rows past the end of the table (the partial last group) are clamped; callers mask them.
    """
    order = torch.argsort(parents)
    sorted_parents = parents.index_select(0, order)
    uniq, counts = torch.unique_consecutive(sorted_parents, return_counts=True)
    child_rows = (uniq.unsqueeze(1) * k + torch.arange(k, device=z.device)).clamp_(max=table.size(0) - 1)
    weights = table.index_select(0, child_rows.reshape(-1)).view(uniq.numel(), k, table.size(1))
    chunks = torch.split(z.index_select(0, order), counts.tolist())
    out = torch.cat([chunk @ w.t() for chunk, w in zip(chunks, weights.unbind(0))], dim=0)
    if bias is not None:
        group_bias = bias.index_select(0, child_rows.reshape(-1)).view(uniq.numel(), k)
        out = out + group_bias.repeat_interleave(counts, dim=0)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return out.index_select(0, inverse)
