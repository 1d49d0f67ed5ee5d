"""Label-smoothed cross-entropy summed over the levels of a factored output (plain torch).

Per level, fairseq's semantics restricted to the valid classes (n of them):
  loss_h = (1 - eps - eps/(n-1)) * nll_h + eps/(n-1) * sum_c -log p_h(c)
Joint: loss = sum_h loss_h + log_normalizer, nll = sum_h nll_h + log_normalizer (= -log p(y)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from .base import LossTerms, masked_log_softmax


@dataclass
class FactoredLoss:
    """Per-token results, all (N,): loss, joint nll (nats), per-level and joint correctness."""

    loss: Tensor
    nll: Tensor
    level_correct: List[Tensor]
    joint_correct: Tensor


def factored_loss(terms: LossTerms, epsilon: float) -> FactoredLoss:
    """Sum of per-level label-smoothed CEs; see the module docstring for the formula."""
    loss = None
    nll = None
    level_correct: List[Tensor] = []
    for level in terms.levels:
        valid = level.valid
        if valid is not None:
            valid = valid.expand_as(level.logits)
        lprobs = masked_log_softmax(level.logits, valid)  # (N, C) fp32
        level_nll = -lprobs.gather(1, level.target.unsqueeze(1)).squeeze(1)
        if epsilon > 0:
            finite = lprobs if valid is None else lprobs.masked_fill(~valid, 0.0)
            smooth = -finite.sum(dim=-1)
            n_valid = (
                torch.full_like(smooth, lprobs.size(1)) if valid is None else valid.sum(-1).to(smooth)
            )
            eps_i = epsilon / (n_valid - 1).clamp(min=1)
            level_loss = (1.0 - epsilon - eps_i) * level_nll + eps_i * smooth
            level_loss = torch.where(n_valid > 1, level_loss, torch.zeros_like(level_loss))
        else:
            level_loss = level_nll
        loss = level_loss if loss is None else loss + level_loss
        nll = level_nll if nll is None else nll + level_nll
        level_correct.append(lprobs.argmax(dim=-1) == level.target)
    if terms.log_normalizer is not None:
        loss = loss + terms.log_normalizer
        nll = nll + terms.log_normalizer
    joint = torch.stack(level_correct, 0).all(0)
    return FactoredLoss(loss=loss, nll=nll, level_correct=level_correct, joint_correct=joint)
