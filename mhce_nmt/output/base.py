"""The one interface every output layer implements (plain torch, no fairseq import).

A layer maps decoder states x (N, d) to a distribution over target ids 0..V-1 without ever
building N x V scores on its training path:
  loss_terms(x, y)  per-level scores on the target's own path        (training criterion)
  log_probs(x)      exact (N, V) log-probs, normalised over valid ids (scoring, ground truth)
  candidates(x, g)  (N, C) ids + exact log-probs, C << V              (coarse-to-fine decoding)
  score(x, ids)     exact log-probs of given ids (N, C)               (forced tokens, ensembles)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..codec import LabelCodec
from ..errors import MHCEConfigError


@dataclass
class LevelScores:
    """Unnormalised scores of one level (head) for N tokens.

    logits (N, C); target (N,) column of the gold class; valid: bool (N, C) or (C,), None = all;
    active: bool (N,), the tokens whose path passes this level (None = all; a shortlisted id
    ends at level 1).
    """

    logits: Tensor
    target: Tensor
    valid: Optional[Tensor] = None
    active: Optional[Tensor] = None


@dataclass
class LossTerms:
    """What the criterion needs: joint nll = sum_h CE_h + log_normalizer (exact unless sampled).

    log_prob_sum (N,) = sum_{v<V} log p(v|x), the uniform term of joint label smoothing: exact,
    or an unbiased estimate (MHE); present only when loss_terms was asked for it.
    """

    levels: List[LevelScores]
    log_normalizer: Optional[Tensor] = None  # (N,) or None (= 0)
    sampled: bool = False  # True when the levels are a sampled approximation (MHS training)
    log_prob_sum: Optional[Tensor] = None  # (N,) or None
    num_classes: int = 0  # V, the number of ids log_prob_sum runs over


class FactoredOutput(nn.Module):
    """Base class: decoder state -> distribution over V target ids through a LabelCodec."""

    codec: LabelCodec
    #: whether candidates() is cheaper than full scoring (MHP, MHE) or just full softmax (MHS)
    supports_coarse_to_fine: bool = False

    def __init__(self, codec: LabelCodec, input_dim: int):
        super().__init__()
        self.codec = codec
        self.input_dim = input_dim

    def check_input(self, x: Tensor) -> None:
        """Reject states of the wrong width with a message instead of a matmul shape error."""
        if x.size(-1) != self.input_dim:
            raise MHCEConfigError(
                f"{type(self).__name__} expects decoder states of width {self.input_dim}, got "
                f"{tuple(x.shape)}: the output layer was built for another decoder output dim."
            )

    def loss_terms(self, x: Tensor, target: Tensor, sum_groups: Optional[int] = None) -> LossTerms:
        """x (N, d), target (N,) -> per-level scores on the target's path (never N x V).

        With sum_groups given, multi-level layers also fill LossTerms.log_prob_sum =
        sum_{v<V} log p(v|x): MHP exactly, MHE from sum_groups other groups drawn per token and
        level (unbiased; 0 = every group, exact). Single-level layers
        (softmax, MHS) leave it None: with one level, per-level smoothing is joint smoothing.
        """
        raise NotImplementedError

    def full_log_probs(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """x (N, d) -> exact (N, V) log-probs."""
        raise NotImplementedError

    def log_probs(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """x (..., d) -> exact (..., V) log-probs, normalised over valid ids."""
        self.check_input(x)
        flat = x.reshape(-1, x.size(-1))
        return self.full_log_probs(flat, temperature).view(*x.shape[:-1], self.codec.vocab_size)

    def candidates(self, x: Tensor, topk_groups: Optional[Sequence[int]] = None,
                   temperature: float = 1.0) -> Tuple[Tensor, Tensor]:
        """x (N, d) -> ids (N, C), exact log-probs (N, C). Default: every id (C = V)."""
        lp = self.log_probs(x, temperature)
        ids = torch.arange(self.codec.vocab_size, device=x.device).expand_as(lp)
        return ids, lp

    def score(self, x: Tensor, ids: Tensor, temperature: float = 1.0) -> Tensor:
        """x (N, d), ids (N, C) -> exact log p(ids) (N, C). Default: gather from full log-probs."""
        return self.log_probs(x, temperature).gather(1, ids)


class CascadeOutput(FactoredOutput):
    """A layer whose log p(y) is a sum over levels along the digit path, plus a per-row constant.

    Subclasses give the level-h children's log-probs for (row, parent-prefix) pairs; this class
    turns that into coarse-to-fine candidates (keep the top g_h prefixes per level) and exact scores.
    """

    supports_coarse_to_fine = True

    def level1_scores(self, x: Tensor) -> Tensor:
        """x (N, d) -> (N, K_1) raw level-1 scores, -inf on invalid classes."""
        raise NotImplementedError

    def prepare(self, x: Tensor, temperature: float) -> object:
        """Per-row work shared by all levels (head logits, projected states)."""
        raise NotImplementedError

    def child_log_probs(self, state: object, level: int, rows: Tensor, parents: Tensor) -> Tensor:
        """rows (M,), parents (M,) prefixes of length level-1 -> (M, K_level) log-scores of the
        children; invalid children are -inf. A fresh tensor: callers may modify it in place."""
        raise NotImplementedError

    def path_correction(self, state: object) -> Optional[Tensor]:
        """(N,) added to the summed path scores to make them exact log-probs, or None."""
        return None

    def resolve_topk(self, topk_groups: Optional[Sequence[int]]) -> List[int]:
        """One kept-prefix count per level 1..H-1; a single value applies to every level."""
        levels = self.codec.num_heads - 1
        if topk_groups is None:
            return [self.codec.num_prefixes[h] for h in range(levels)]
        values = list(topk_groups)
        if len(values) == 1:
            values = values * levels
        if len(values) != levels:
            raise MHCEConfigError(
                f"--mhe-topk-groups has {len(values)} values but the codec "
                f"{'x'.join(map(str, self.codec.head_sizes))} has {levels} coarse levels: give one "
                f"value, or {levels} comma-separated values."
            )
        for h, g in enumerate(values):
            limit = self.codec.num_prefixes[h]
            if not 1 <= g <= limit:
                raise MHCEConfigError(
                    f"--mhe-topk-groups value {g} for level {h + 1} is out of range: it must be "
                    f"between 1 and {limit} (the number of valid prefixes at that level)."
                )
        return values

    def candidates(self, x: Tensor, topk_groups: Optional[Sequence[int]] = None,
                   temperature: float = 1.0) -> Tuple[Tensor, Tensor]:
        """Keep the top g_h prefixes per level, expand the last level fully.

        Returns ids (N, g_{H-1} * K_H) and their exact joint log-probs; slots that are not real
        tokens (code >= V, or below a pruned prefix) have score -inf and id clamped to V-1.
        """
        self.check_input(x)
        keep = self.resolve_topk(topk_groups)
        state = self.prepare(x, temperature)
        n = x.size(0)
        parents = torch.zeros(n, 1, dtype=torch.long, device=x.device)  # (N, W)
        scores = torch.zeros(n, 1, dtype=torch.float32, device=x.device)
        for level in range(1, self.codec.num_heads + 1):
            k = self.codec.head_sizes[level - 1]
            width = parents.size(1)
            rows = torch.arange(n, device=x.device).repeat_interleave(width)
            lp = self.child_log_probs(state, level, rows, parents.reshape(-1))  # (N*W, K), fresh
            scores = lp.view(n, width, k).add_(scores.unsqueeze(-1)).view(n, width * k)
            # invalid children (codes >= V, and every child of a pruned-in invalid prefix, kept
            # when g_h exceeds the valid prefixes) must be -inf, not NaN (a softmax over no valid
            # class): topk ranks NaN first. `scores` is fresh, so this masks in place.
            mask_invalid_children_(self.codec, scores.view(n * width, k), level, parents.reshape(-1))
            parents = (parents.unsqueeze(-1) * k + torch.arange(k, device=x.device)).view(n, width * k)
            if level < self.codec.num_heads:
                g = min(keep[level - 1], width * k)
                scores, idx = scores.topk(g, dim=1)
                parents = parents.gather(1, idx)
        correction = self.path_correction(state)
        if correction is not None:
            scores = scores + correction.unsqueeze(-1)
        # codes >= V are -inf already (masked at the last level); NaN / +inf become -inf too
        scores = scores.nan_to_num_(nan=float("-inf"), posinf=float("-inf"), neginf=float("-inf"))
        ids = parents.clamp_(max=self.codec.vocab_size - 1)  # parents is a fresh tensor here
        return ids, scores

    def score(self, x: Tensor, ids: Tensor, temperature: float = 1.0) -> Tensor:
        """Exact log p(ids) by walking each id's digit path; each distinct (row, prefix) once."""
        self.check_input(x)
        state = self.prepare(x, temperature)
        n, c = ids.shape
        rows = torch.arange(n, device=x.device).unsqueeze(1).expand(n, c).reshape(-1)
        flat = ids.reshape(-1)
        total = torch.zeros(flat.shape, dtype=torch.float32, device=x.device)
        for level in range(1, self.codec.num_heads + 1):
            parent = self.codec.prefix(flat, level - 1) if level > 1 else torch.zeros_like(flat)
            key = rows * self.codec.num_prefixes[max(level - 2, 0)] + parent if level > 1 else rows
            uniq, inverse = torch.unique(key, return_inverse=True)
            uniq_rows = rows.new_empty(uniq.shape).scatter_(0, inverse, rows)
            uniq_parents = parent.new_empty(uniq.shape).scatter_(0, inverse, parent)
            lp = self.child_log_probs(state, level, uniq_rows, uniq_parents)  # (U, K)
            digit = (flat // self.codec.strides[level - 1]) % self.codec.head_sizes[level - 1]
            total = total + lp[inverse, digit].float()
        correction = self.path_correction(state)
        if correction is not None:
            total = total + correction[rows]
        return total.view(n, c)


def mask_invalid_children_(codec: LabelCodec, scores: Tensor, level: int, parents: Tensor) -> Tensor:
    """scores (M, K_level) of the children of parents (M,): set invalid children to -inf in place.

    Only parents p >= P_level // K_level can have an invalid child, so on CPU only their rows are
    touched (one or a few rows instead of M x K); elsewhere a dense masked_fill_ (no host sync).
    """
    k = codec.head_sizes[level - 1]
    full = codec.num_prefixes[level - 1] // k  # parents below this have K valid children
    if scores.device.type != "cpu":
        return scores.masked_fill_(~codec.child_valid(level, parents), float("-inf"))
    bad = (parents >= full).nonzero().squeeze(1)
    if bad.numel() == 0:
        return scores
    if bad.numel() * 4 > parents.numel():
        return scores.masked_fill_(~codec.child_valid(level, parents), float("-inf"))
    sub = scores.index_select(0, bad)
    sub.masked_fill_(~codec.child_valid(level, parents.index_select(0, bad)), float("-inf"))
    return scores.index_copy_(0, bad, sub)


def at_least_fp32(t: Tensor) -> Tensor:
    """fp16/bf16 -> fp32; fp32 and fp64 unchanged (fp64 keeps gradcheck exact)."""
    return t if t.dtype == torch.float64 else t.float()


def masked_log_softmax(logits: Tensor, valid: Optional[Tensor], temperature: float = 1.0) -> Tensor:
    """log_softmax in (at least) fp32 over the valid columns; invalid columns are -inf."""
    scores = at_least_fp32(logits)
    if temperature != 1.0:
        scores = scores / temperature
    if valid is not None:
        scores = scores.masked_fill(~valid, float("-inf"))
    return torch.log_softmax(scores, dim=-1)
