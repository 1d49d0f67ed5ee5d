"""MHS: multi-head sampling. The full (V, d) softmax weight, arranged as P_1 groups of
S = prod(K_2..K_H) consecutive ids (the codec's first digit is the group).

Training: softmax over the tokens of a sampled set of groups = every target's group plus
uniformly drawn others up to M groups; optional logQ correction adds -log q to the drawn groups'
logits, q = (M - U) / (P_1 - U) their inclusion probability (U target groups).
Inference (and eval mode): the exact full softmax, so the weights are a stock output projection.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ..codec import LabelCodec
from ..errors import MHCEConfigError
from .base import LevelScores, LossTerms
from .softmax import SoftmaxOutput


class MHSOutput(SoftmaxOutput):
    """Sampled-group softmax for training, full softmax otherwise."""

    def __init__(self, codec: LabelCodec, input_dim: int, sampled_groups: Optional[int] = None,
                 logq_correction: bool = False, weight: Optional[nn.Parameter] = None):
        super().__init__(codec, input_dim, weight)
        self.group_size = codec.strides[0]
        self.num_groups = codec.num_prefixes[0]
        if sampled_groups is None:
            sampled_groups = max(1, math.ceil(self.num_groups / 8))
        if not 1 <= sampled_groups <= self.num_groups:
            raise MHCEConfigError(
                f"--mhs-groups {sampled_groups} is out of range: it must be between 1 and "
                f"{self.num_groups} (the number of groups of {codec})."
            )
        self.sampled_groups = sampled_groups
        self.logq_correction = logq_correction

    def sample_groups(self, target_groups: Tensor) -> tuple[Tensor, int]:
        """Target groups first, then uniform draws from the rest up to M. Returns (groups, U)."""
        present = torch.unique(target_groups)
        extra = self.sampled_groups - present.numel()
        if extra <= 0:
            return present, present.numel()
        others = torch.ones(self.num_groups, dtype=torch.bool, device=present.device)
        others[present] = False
        pool = others.nonzero().squeeze(1)
        drawn = pool[torch.randperm(pool.numel(), device=pool.device)[:extra]]
        return torch.cat([present, drawn]), present.numel()

    def loss_terms(self, x: Tensor, target: Tensor, sum_groups: Optional[int] = None) -> LossTerms:
        """Training with M < P_1: (N, M*S) logits over sampled groups (label smoothing then runs
        over those M*S ids); otherwise the full softmax."""
        if not self.training or self.sampled_groups >= self.num_groups:
            return super().loss_terms(x, target, sum_groups)
        self.check_input(x)
        s = self.group_size
        target_groups = target // s
        groups, n_target = self.sample_groups(target_groups)
        columns = (groups.unsqueeze(1) * s + torch.arange(s, device=x.device)).view(-1)  # (M*S,)
        valid = columns < self.codec.vocab_size
        logits = x @ self.weight.index_select(0, columns.clamp(max=self.codec.vocab_size - 1)).t()
        if self.logq_correction and groups.numel() > n_target:
            q = (groups.numel() - n_target) / (self.num_groups - n_target)
            shift = torch.zeros_like(columns, dtype=logits.dtype)
            shift[n_target * s:] = -math.log(q)
            logits = logits + shift
        position = torch.full((self.num_groups,), -1, dtype=torch.long, device=x.device)
        position[groups] = torch.arange(groups.numel(), device=x.device)
        column_of_target = position[target_groups] * s + target % s
        return LossTerms(levels=[LevelScores(logits, column_of_target, valid)], sampled=True)
