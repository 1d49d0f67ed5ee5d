"""MHP: multi-head product. H independent heads Linear(d, K_h) on the same state.

log p(y|x) = sum_h log softmax_h(x)[d_h(y)] - log Z(x), where Z = sum_{y<V} prod_h p_h(d_h(y))
is the head-product mass on valid codes (Z = 1 when prod(K) = V). Cost d * sum(K), not d * V.
The uniform term of joint smoothing is exact in O(sum K):
  sum_{v<V} log p(v|x) = sum_h sum_c n_h(c) log p_h(c) - V log Z,  n_h(c) = #{v < V: d_h(v) = c}.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor, nn

from ..codec import LabelCodec
from .base import CascadeOutput, LevelScores, LossTerms, mask_invalid_children_, at_least_fp32


@dataclass
class _HeadState:
    log_probs: List[Tensor]  # H x (N, K_h) fp32
    log_z: Optional[Tensor]  # (N,)


class MHPOutput(CascadeOutput):
    """Kronecker product of H head distributions, renormalised over valid codes."""

    def __init__(self, codec: LabelCodec, input_dim: int):
        super().__init__(codec, input_dim)
        self.heads = nn.Linear(input_dim, sum(codec.head_sizes))  # all heads in one matmul
        nn.init.normal_(self.heads.weight, mean=0.0, std=input_dim ** -0.5)
        nn.init.zeros_(self.heads.bias)
        self.register_buffer("codec_spec", torch.tensor(codec.spec()), persistent=True)
        # digits of V as host ints: log Z slices by them every step, and reading a device
        # buffer's values back would be a host sync per head
        self.bound_digits = tuple(int(d) for d in self._bound_digits(codec))
        self.register_buffer("digit_table", codec.encode(codec.all_ids()), persistent=False)
        self.register_buffer("digit_counts", torch.cat([codec.digit_counts(h) for h in
                                                        range(1, codec.num_heads + 1)]),
                             persistent=False)  # (sum K,) int64: n_h(c) head after head (exact in any dtype)

    @staticmethod
    def _bound_digits(codec: LabelCodec) -> Tensor:
        """Digits of V (exclusive bound); empty when every code is valid."""
        if codec.capacity == codec.vocab_size:
            return torch.zeros(0, dtype=torch.long)
        return codec.encode(torch.tensor(codec.vocab_size))

    def head_logits(self, x: Tensor) -> List[Tensor]:
        """x (N, d) -> H x (N, K_h)."""
        return list(torch.split(self.heads(x), self.codec.head_sizes, dim=-1))

    def log_valid_mass(self, head_log_probs: List[Tensor]) -> Optional[Tensor]:
        """log Z: ids < V are those whose digits are below V's digits at the first difference,
        so Z = sum_h prod_{j<h} p_j(v_j) * sum_{c<v_h} p_h(c). (N,) or None when Z = 1."""
        if not self.bound_digits:
            return None
        terms = []
        prefix = torch.zeros_like(head_log_probs[0][:, 0])
        for v, lp in zip(self.bound_digits, head_log_probs):
            if v > 0:
                terms.append(prefix + torch.logsumexp(lp[:, :v], dim=-1))
            prefix = prefix + lp[:, v]
        return torch.logsumexp(torch.stack(terms, 0), dim=0)

    def loss_terms(self, x: Tensor, target: Tensor, sum_groups: Optional[int] = None) -> LossTerms:
        """One level per head on the target's digits, plus log Z for exactness (and, with
        sum_groups given, the exact sum_{v<V} log p(v|x); see the module docstring)."""
        self.check_input(x)
        digits = self.codec.encode(target)
        logits = self.head_logits(x)
        levels = [LevelScores(logits=l, target=digits[:, h]) for h, l in enumerate(logits)]
        head_log_probs = [torch.log_softmax(at_least_fp32(l), dim=-1) for l in logits]
        log_z = self.log_valid_mass(head_log_probs)
        log_prob_sum = None
        if sum_groups is not None:
            log_prob_sum = torch.cat(head_log_probs, dim=-1) @ self.digit_counts.to(head_log_probs[0].dtype)
            if log_z is not None:
                log_prob_sum = log_prob_sum - self.codec.vocab_size * log_z
        return LossTerms(levels=levels, log_normalizer=log_z, log_prob_sum=log_prob_sum,
                         num_classes=self.codec.vocab_size)

    def level1_scores(self, x: Tensor) -> Tensor:
        """Head 1's logits (every class of a head is valid; Z handles invalid codes)."""
        return self.head_logits(x)[0]

    def prepare(self, x: Tensor, temperature: float) -> _HeadState:
        logits = self.head_logits(x)
        lps = [torch.log_softmax(at_least_fp32(l) / temperature, dim=-1) for l in logits]
        return _HeadState(log_probs=lps, log_z=self.log_valid_mass(lps))

    def child_log_probs(self, state: _HeadState, level: int, rows: Tensor, parents: Tensor) -> Tensor:
        """Head `level`'s log-probs for each row (independent of the parent), invalid codes -inf."""
        lp = state.log_probs[level - 1].index_select(0, rows)  # a fresh copy: mask it in place
        return mask_invalid_children_(self.codec, lp, level, parents)

    def path_correction(self, state: _HeadState) -> Optional[Tensor]:
        return None if state.log_z is None else -state.log_z

    def full_log_probs(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """(N, V): sum_h lp_h[:, d_h(v)] - log Z for every valid id v."""
        state = self.prepare(x, temperature)
        total = None
        for h, lp in enumerate(state.log_probs):
            part = lp.index_select(1, self.digit_table[:, h])
            total = part if total is None else total + part
        if state.log_z is not None:
            total = total - state.log_z.unsqueeze(-1)
        return total
