"""A frequent-token shortlist scored directly at level 1, beside the groups of a factored tail.

Adaptive softmax's head with a factored tail. a (N_s,) are the shortlist's logits, b (K_1,) the
tail layer's level-1 scores (-inf on invalid groups), T the temperature; the gate is
  g = log_softmax([a / T ; logsumexp(b / T)])                                    (N_s + 1,)
  log p(s | x)       = g[s]                          for a shortlisted id s < N_s
  log p(N_s + t | x) = g[N_s] + log p_tail(t | x)     for tail id t < V - N_s
For MHE this is one level-1 softmax over [a ; b] (N_s + K_1 classes) followed by the tail's
levels; for MHP the tail keeps its own normaliser over valid codes. The uniform term of joint
smoothing is sum_s g[s] + (V - N_s) g[N_s] + sum_t log p_tail(t), the last from the tail layer.

Tied (an MHE tail tied with row offset N_s), every id's output row is its decoder input
embedding W[v], as in fairseq's tied softmax: a = W[:N_s] P x + c, with P the tail's last-level
projection (the identity when e = d), and tail leaf t scores W[N_s + t] P x + b_t within its group.
With only the shortlist tied (``short_weight``, mhe or mhp), a = W[:N_s] x + c and the tail keeps
its own parameters.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..codec import ShortlistCodec
from ..errors import MHCEConfigError
from .base import CascadeOutput, FactoredOutput, LevelScores, LossTerms, at_least_fp32
from .mhe import MHEOutput


class ShortlistOutput(FactoredOutput):
    """Shortlisted ids end at level 1; every other id goes on through the tail layer's levels."""

    supports_coarse_to_fine = True

    def __init__(self, codec: ShortlistCodec, input_dim: int, tail: CascadeOutput,
                 short_weight: Optional[nn.Parameter] = None):
        super().__init__(codec, input_dim)
        self.tail = tail
        self.tied = isinstance(tail, MHEOutput) and tail.tied_row_offset == codec.shortlist
        if short_weight is not None and self.tied:
            raise MHCEConfigError("--mhce-tie-shortlist with --mhe-tie-label-embeddings: the latter already ties "
                                  "the shortlist's rows (and the tail's); drop one.")
        if short_weight is not None and (short_weight.size(1) != input_dim or short_weight.size(0) < codec.shortlist):
            raise MHCEConfigError(
                f"--mhce-tie-shortlist needs decoder input embeddings of width {input_dim} with at least "
                f"{codec.shortlist} rows, got {tuple(short_weight.shape)}: set --decoder-embed-dim equal to "
                "--decoder-output-dim, or drop --mhce-tie-shortlist.")
        self.short_weight = short_weight  # (V, d) decoder input embeddings: rows < N_s are the shortlist's
        if self.tied or short_weight is not None:
            self.short_bias = nn.Parameter(torch.zeros(codec.shortlist))
        else:
            self.short = nn.Linear(input_dim, codec.shortlist)
            nn.init.normal_(self.short.weight, mean=0.0, std=input_dim ** -0.5)
            nn.init.zeros_(self.short.bias)
        self.register_buffer("shortlist_spec", torch.tensor(codec.spec()), persistent=True)

    def short_logits(self, x: Tensor) -> Tensor:
        """x (N, d) -> (N, N_s) raw shortlist scores (tied: W[:N_s] P x + c; shortlist tied: W[:N_s] x + c)."""
        if self.tied:
            return F.linear(self.tail.projections[-1](x), self.tail.head_rows(), self.short_bias)
        if self.short_weight is not None:
            return F.linear(x, self.short_weight[: self.codec.shortlist], self.short_bias)
        return self.short(x)

    def gate(self, short_logits: Tensor, tail_level1: Tensor, temperature: float = 1.0) -> Tensor:
        """(N, N_s) and (N, K_1) raw scores -> (N, N_s + 1) gate log-probs (last column: the tail)."""
        tail_mass = torch.logsumexp(at_least_fp32(tail_level1) / temperature, dim=-1, keepdim=True)
        scores = torch.cat([at_least_fp32(short_logits) / temperature, tail_mass], dim=-1)
        return torch.log_softmax(scores, dim=-1)

    def gate_for(self, x: Tensor, temperature: float) -> Tensor:
        return self.gate(self.short_logits(x), self.tail.level1_scores(x), temperature)

    def loss_terms(self, x: Tensor, target: Tensor, sum_groups: Optional[int] = None) -> LossTerms:
        """Gate level for every token, then the tail's levels for tail tokens only. Shortlisted
        tokens give the tail a stand-in target (tail id 0), whose levels are marked inactive;
        their uniform-term estimate stays unbiased (any own group is exact)."""
        self.check_input(x)
        n_short = self.codec.shortlist
        short = target < n_short
        tail_terms = self.tail.loss_terms(x, (target - n_short).clamp(min=0), sum_groups)
        first = tail_terms.levels[0]
        tail_level1 = first.logits if first.valid is None else first.logits.masked_fill(
            ~first.valid.expand_as(first.logits), float("-inf"))
        gate_logits = torch.cat([at_least_fp32(self.short_logits(x)),
                                 torch.logsumexp(at_least_fp32(tail_level1), dim=-1, keepdim=True)], dim=-1)
        levels = [LevelScores(gate_logits, torch.where(short, target, torch.full_like(target, n_short)))]
        levels += [dataclasses.replace(level, active=~short) for level in tail_terms.levels]
        log_normalizer = tail_terms.log_normalizer
        if log_normalizer is not None:
            log_normalizer = log_normalizer.masked_fill(short, 0.0)
        log_prob_sum = None
        if tail_terms.log_prob_sum is not None:
            gate = torch.log_softmax(gate_logits, dim=-1)
            tail_ids = self.codec.vocab_size - n_short
            log_prob_sum = gate[:, :n_short].sum(-1) + tail_ids * gate[:, n_short] + tail_terms.log_prob_sum
        return LossTerms(levels=levels, log_normalizer=log_normalizer, log_prob_sum=log_prob_sum,
                         num_classes=self.codec.vocab_size)

    def full_log_probs(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """(N, V) = [g[:N_s] | g[N_s] + log p_tail]."""
        gate = self.gate_for(x, temperature)
        n_short = self.codec.shortlist
        tail = self.tail.full_log_probs(x, temperature) + gate[:, n_short:]
        return torch.cat([gate[:, :n_short], tail], dim=-1)

    def resolve_topk(self, topk_groups: Optional[Sequence[int]]) -> List[int]:
        """Kept prefixes per coarse level of the tail (the shortlist is always scored in full)."""
        return self.tail.resolve_topk(topk_groups)

    def candidates(self, x: Tensor, topk_groups: Optional[Sequence[int]] = None,
                   temperature: float = 1.0) -> Tuple[Tensor, Tensor]:
        """Every shortlisted id and the tail's coarse-to-fine candidates, all with exact scores:
        ids (N, N_s + C_tail)."""
        self.check_input(x)
        gate = self.gate_for(x, temperature)
        n_short = self.codec.shortlist
        tail_ids, tail_scores = self.tail.candidates(x, topk_groups, temperature)
        short_ids = torch.arange(n_short, device=x.device).expand(x.size(0), n_short)
        ids = torch.cat([short_ids, tail_ids + n_short], dim=1)
        return ids, torch.cat([gate[:, :n_short], tail_scores + gate[:, n_short:]], dim=1)

    def score(self, x: Tensor, ids: Tensor, temperature: float = 1.0) -> Tensor:
        """Exact log p(ids) (N, C): the gate for shortlisted ids, gate + tail path otherwise."""
        self.check_input(x)
        gate = self.gate_for(x, temperature)
        n_short = self.codec.shortlist
        tail = self.tail.score(x, (ids - n_short).clamp(min=0), temperature) + gate[:, n_short:]
        short = gate.gather(1, ids.clamp(max=n_short - 1))
        return torch.where(ids < n_short, short, tail)
