"""The CPU way of `grouped.grouped_child_scores`: a host-side plan of batched and per-prefix matmuls.

out[m, c] = <z[m], table[parents[m] * K + c]> (+ bias), for M rows. The plan reads the rows'
prefixes back to the host (`.tolist()`): free on a CPU, a sync on an accelerator (see
grouped_device.py for the way that runs there). Two ways to run the
per-prefix products, mixed per call by a cost model (`padded_rows`):
- padded: prefixes are taken in blocks of BLOCK_PREFIXES consecutive ones; the first `cap` rows
  of every prefix of a block go into a (block, cap, e) zero-padded batch and ONE batched matmul
  against the block's table rows viewed in place as (block, K, e). Absent prefixes cost cap
  padded rows each, but a few bmm calls keep every core busy where ~200 tiny matmuls cannot;
- per prefix: the rows past `cap` (only heavy prefixes have any), prefixes of blocks that are not
  worth padding, and the partial last prefix each cost one (rows x e) @ (e x K) matmul that reads
  its K table rows in place.
All of it runs in one flat "layout" of rows (batches first, then the per-prefix segments), filled
by one gather of the states and read back by one gather of the scores. A custom autograd
function does the backward the same way: each block's bmm writes its (block*K, e) weight
gradient (absent prefixes get zeros from the padding), heavy prefixes add their extra rows with
one matmul each. No (M x K x e) tensor, no gathered copy of the table and no per-prefix autograd
node is ever made. Calls without autograd (decoding) reuse the layout buffers between calls.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: One extra matmul call costs about as much as this many padded rows in a batched matmul
#: (2-core CPU, K~181, e=512: ~80 us per call vs ~3 us per padded row).
MATMUL_CALL_ROWS = 24
#: Consecutive prefixes that share one batched matmul and its rows-per-prefix. Frequent tokens
#: have small ids, so low prefixes get many rows and high ones few: blocks pad each to its own.
BLOCK_PREFIXES = 16


def padded_rows(sizes: List[int], prefixes: int) -> int:
    """Rows per prefix in a padded batch of `prefixes` prefixes (0 = one matmul per prefix).

    sizes: rows of each present prefix of the batch. Minimises cost(c) = [c > 0] * CALL +
    prefixes*c + sum_u max(n_u - c, 0) + CALL * #{u: n_u > c} (CALL = MATMUL_CALL_ROWS) over
    c in {0} and the sizes (cost is piecewise linear in c, so its minimum is at one of them).
    """
    ordered = sorted(sizes, reverse=True)
    best_cap, best_cost = 0, sum(ordered) + MATMUL_CALL_ROWS * len(ordered)
    above = 0  # sum of the sizes strictly above the candidate c
    for j, c in enumerate(ordered):
        if not (j and ordered[j - 1] == c):
            cost = MATMUL_CALL_ROWS * (1 + j) + prefixes * c + (above - j * c)
            if cost < best_cost:
                best_cap, best_cost = c, cost
        above += c
    return best_cap


@dataclass(frozen=True)
class _Block:
    """Prefixes first..first+count-1 in one (count, cap, e) padded batch at flat row `offset`."""

    first: int
    count: int
    cap: int
    offset: int

    def rows(self) -> slice:
        return slice(self.offset, self.offset + self.count * self.cap)

    def view(self, flat: Tensor) -> Tensor:
        """(count, cap, w) view of this block's rows of a flat (S, w) batch."""
        return flat[self.rows()].view(self.count, self.cap, flat.size(1))

    def table(self, table: Tensor, k: int) -> Tensor:
        """(count, K, ...) view of the block's table rows (no copy)."""
        return table[self.first * k: (self.first + self.count) * k].view(self.count, k, *table.shape[1:])


class _Plan:
    """Rows sorted by parent, and where each one runs: a padded batch or a per-prefix matmul.

    Parents p < full = R // K own K whole table rows [p*K, p*K + K); a parent >= full is the
    partial last group, whose child rows past the table's end are clamped to R - 1.
    Layout: rows [0, S) are the blocks' padded batches (S = sum of count*cap), rows [S, L) the
    segments (parent, lo, hi, batched) of sorted rows done by one matmul each, in order
    (batched: the parent's first rows went to a batch). slot (M,) is each input row's layout
    row. zero_parents are whole parents that no batch and no segment covers (zero gradient).
    """

    def __init__(self, parents: Tensor, k: int, rows: int, cap: Optional[int]):
        device = parents.device
        self.order = torch.argsort(parents)
        sorted_parents = parents.index_select(0, self.order)
        self.uniq, self.counts = torch.unique_consecutive(sorted_parents, return_counts=True)
        self.k = k
        self.table_rows = rows
        self.full = rows // k
        group_parents: List[int] = self.uniq.tolist()
        sizes: List[int] = self.counts.tolist()
        members: Dict[int, List[int]] = {}  # block -> indices of its present parents
        for u, parent in enumerate(group_parents):
            if parent < self.full:
                members.setdefault(parent // BLOCK_PREFIXES, []).append(u)
        self.blocks: List[_Block] = []
        group_cap = [0] * len(sizes)
        group_base = [0] * len(sizes)  # layout row of the parent's first batched row
        covered = [False] * self.full
        offset = 0
        for b in range(-(-self.full // BLOCK_PREFIXES)):
            first = b * BLOCK_PREFIXES
            count = min(BLOCK_PREFIXES, self.full - first)
            present = members.get(b, [])
            block_sizes = [sizes[u] for u in present]
            c = padded_rows(block_sizes, count) if cap is None else cap
            c = min(c, max(block_sizes, default=0))
            if c:
                self.blocks.append(_Block(first, count, c, offset))
                covered[first: first + count] = [True] * count
                for u in present:
                    group_cap[u] = c
                    group_base[u] = offset + (group_parents[u] - first) * c
                offset += count * c
        self.batch_rows = offset
        self.segments: List[Tuple[int, int, int, bool]] = []
        start = 0
        for u, (parent, size) in enumerate(zip(group_parents, sizes)):
            lo = start + min(size, group_cap[u])
            if lo < start + size:
                self.segments.append((parent, lo, start + size, group_cap[u] > 0))
                if parent < self.full:
                    covered[parent] = True
            start += size
        self.zero_parents = [p for p in range(self.full) if not covered[p]]
        # layout row of each sorted row: its batch slot, or S + its place among segment rows
        position = torch.arange(sorted_parents.numel(), device=device)
        position -= torch.repeat_interleave(torch.cumsum(self.counts, 0) - self.counts, self.counts)
        row_cap = torch.repeat_interleave(torch.tensor(group_cap, device=device), self.counts)
        row_base = torch.repeat_interleave(torch.tensor(group_base, device=device), self.counts)
        batched = position < row_cap
        in_segment = (~batched).to(torch.long)
        slot_sorted = torch.where(batched, row_base + position,
                                  self.batch_rows + torch.cumsum(in_segment, 0) - in_segment)
        self.layout_rows = self.batch_rows + sum(hi - lo for _, lo, hi, _ in self.segments)
        self.slot_sorted = slot_sorted
        self.slot = torch.empty_like(slot_sorted).index_copy_(0, self.order, slot_sorted)

    def segment_slices(self) -> List[Tuple[int, bool, slice]]:
        """(parent, batched, its layout rows) for each segment."""
        out, offset = [], self.batch_rows
        for parent, lo, hi, batched in self.segments:
            out.append((parent, batched, slice(offset, offset + hi - lo)))
            offset += hi - lo
        return out

    def layout_sources(self, src: Tensor, zero_row: int) -> Tensor:
        """(L,) state row of every layout row (src (M,): state row of each sorted row);
        padding rows read `zero_row`."""
        sources = torch.full((self.layout_rows,), zero_row, dtype=torch.long, device=src.device)
        return sources.index_copy_(0, self.slot_sorted, src)

    def partial_rows(self, parent: int, device: torch.device) -> Tensor:
        """Table rows of the children of a parent >= full, clamped to the table."""
        lo = parent * self.k
        return torch.arange(lo, lo + self.k, device=device).clamp_(max=self.table_rows - 1)

    def parent_rows(self, table: Tensor, parent: int) -> Tensor:
        """The K table (or bias) rows of a parent's children: a view, or a clamped copy."""
        if parent < self.full:
            return table[parent * self.k: parent * self.k + self.k]
        return table.index_select(0, self.partial_rows(parent, table.device))


class _Scratch(threading.local):
    """Per-thread buffers lent to no-grad calls (decoding): the layouts are the largest
    temporaries of a step, and fresh ones cost a page fault per 4 KB on every step."""

    def __init__(self):
        self.buffers: Dict[Tuple[str, torch.dtype, torch.device], Tensor] = {}

    def get(self, name: str, rows: int, cols: int, like: Tensor) -> Tensor:
        """A (rows, cols) buffer `name` with the dtype and device of `like`; contents undefined."""
        key = (name, like.dtype, like.device)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < rows * cols:
            buf = self.buffers[key] = like.new_empty(rows * cols * 5 // 4 + 1)
        return buf[: rows * cols].view(rows, cols)


_SCRATCH = _Scratch()


def _gather_rows(source: Tensor, index: Tensor, out: Optional[Tensor]) -> Tensor:
    """source (N, w) with a zero row N appended, rows `index` (L,) -> (L, w) (into out if given)."""
    extended = torch.cat([source, source.new_zeros(1, source.size(1))])
    return extended.index_select(0, index) if out is None else torch.index_select(extended, 0, index, out=out)


def _layout_scores(plan: _Plan, z_layout: Tensor, table: Tensor, bias: Optional[Tensor],
                   out: Tensor) -> Tensor:
    """z_layout (L, e) -> out (L, K): every batch and segment product, written in place."""
    k = plan.k
    for blk in plan.blocks:
        weights_t = blk.table(table, k).transpose(1, 2)  # (count, e, K) view
        if bias is None:
            torch.bmm(blk.view(z_layout), weights_t, out=blk.view(out))
        else:
            torch.baddbmm(blk.table(bias, k).unsqueeze(1), blk.view(z_layout), weights_t, out=blk.view(out))
    for parent, _, rows in plan.segment_slices():
        w = plan.parent_rows(table, parent)
        if bias is None:
            torch.mm(z_layout[rows], w.t(), out=out[rows])
        else:
            torch.addmm(plan.parent_rows(bias, parent), z_layout[rows], w.t(), out=out[rows])
    return out


def _forward(z: Tensor, table: Tensor, bias: Optional[Tensor], parents: Tensor, k: int,
             rows: Optional[Tensor], cap: Optional[int], scratch: Optional[_Scratch]
             ) -> Tuple[_Plan, Tensor, Tensor]:
    """(plan, sources (L,) state row of each layout row, scores (M, K) in input row order);
    `scratch` lends the layout buffers (calls without autograd), else they are allocated."""
    plan = _Plan(parents, k, table.size(0), cap)
    src = plan.order if rows is None else rows.index_select(0, plan.order)  # state row of each sorted row
    sources = plan.layout_sources(src, z.size(0))
    if scratch is None:
        z_layout, out = None, z.new_empty(plan.layout_rows, k)
    else:
        z_layout = scratch.get("states", plan.layout_rows, z.size(1), z)
        out = scratch.get("scores", plan.layout_rows, k, z)
    scores = _layout_scores(plan, _gather_rows(z, sources, z_layout), table, bias, out)
    return plan, sources, scores.index_select(0, plan.slot)


class _GroupedChildScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, table: Tensor, bias: Optional[Tensor], parents: Tensor, k: int,
                rows: Optional[Tensor], cap: Optional[int]) -> Tensor:
        plan, sources, scores = _forward(z, table, bias, parents, k, rows, cap, None)
        ctx.plan = plan
        ctx.has_bias = bias is not None
        ctx.save_for_backward(z, table, sources)
        return scores

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        z, table, sources = ctx.saved_tensors
        plan: _Plan = ctx.plan
        k = plan.k
        need_z, need_table, need_bias = ctx.needs_input_grad[:3]
        grad_out = grad_out.to(z.dtype)
        # grad_out in the layout; padding rows stay zero and so add nothing below
        go = grad_out.new_zeros(plan.layout_rows, k).index_copy_(0, plan.slot, grad_out)
        z_layout = _gather_rows(z, sources, None)
        grad_z = grad_table = grad_bias = None
        gz_layout = z.new_empty(plan.layout_rows, z.size(1)) if need_z else None
        if need_table:
            # fairseq frees grads every step, so a fresh buffer; every row is written below
            grad_table = torch.empty_like(table, memory_format=torch.contiguous_format)
            grad_table[plan.full * k:].zero_()  # partial group: accumulated by index_add_
            if plan.zero_parents:
                zero = torch.tensor(plan.zero_parents, device=table.device)
                grad_table[: plan.full * k].view(plan.full, k, -1).index_fill_(0, zero, 0)
        for blk in plan.blocks:
            if need_z:
                torch.bmm(blk.view(go), blk.table(table, k), out=blk.view(gz_layout))
            if need_table:
                torch.bmm(blk.view(go).transpose(1, 2), blk.view(z_layout), out=blk.table(grad_table, k))
        for parent, batched, rows in plan.segment_slices():
            if need_z:
                torch.mm(go[rows], plan.parent_rows(table, parent), out=gz_layout[rows])
            if need_table:
                if parent >= plan.full:  # clamped rows repeat: accumulate like index_select's backward
                    grad_table.index_add_(0, plan.partial_rows(parent, z.device), go[rows].t() @ z_layout[rows])
                elif batched:  # the batch wrote this parent's first rows' share already
                    plan.parent_rows(grad_table, parent).addmm_(go[rows].t(), z_layout[rows])
                else:
                    torch.mm(go[rows].t(), z_layout[rows], out=plan.parent_rows(grad_table, parent))
        if need_z:
            grad_z = z.new_zeros(z.size(0) + 1, z.size(1)).index_add_(0, sources, gz_layout)[:-1]
        if need_bias and ctx.has_bias:
            go_sorted = grad_out.index_select(0, plan.order)
            segment = torch.repeat_interleave(torch.arange(plan.uniq.numel(), device=go.device), plan.counts)
            per_group = go.new_zeros(plan.uniq.numel(), k).index_add_(0, segment, go_sorted)
            child_rows = (plan.uniq.unsqueeze(1) * k + torch.arange(k, device=go.device))
            child_rows = child_rows.clamp_(max=table.size(0) - 1).reshape(-1)
            grad_bias = go.new_zeros(table.size(0)).index_add_(0, child_rows, per_group.reshape(-1))
        return grad_z, grad_table, grad_bias, None, None, None, None


def planned_child_scores(z: Tensor, parents: Tensor, table: Tensor, bias: Optional[Tensor],
                         k: int, rows: Optional[Tensor] = None, cap: Optional[int] = None) -> Tensor:
    """grouped_child_scores by a host-side plan (arguments as there). cap: rows per prefix in
    the padded batched matmuls (None = chosen per block by `padded_rows`, 0 = one matmul per
    prefix). Child rows past the end of the table (the partial last group) are clamped."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (z, table, bias)):
        return _GroupedChildScores.apply(z, table, bias, parents, k, rows, cap)
    return _forward(z, table, bias, parents, k, rows, cap, _SCRATCH)[2]
