"""Label-smoothed cross-entropy over the levels of a factored output (plain torch).

Two smoothings (eps = epsilon, V valid ids, nll = -log p(y) = sum_h nll_h + log_normalizer):
  joint      fairseq's label_smoothed_nll_loss on the joint distribution: 1-eps on the gold id,
             eps spread uniformly over the other V-1 ids.
               loss = (1 - eps - eps/(V-1)) * nll - eps/(V-1) * sum_{v<V} log p(v)
             The sum comes from the layer (LossTerms.log_prob_sum; an unbiased estimate for MHE).
  per-level  fairseq's formula inside each level's softmax over its n_h valid classes:
               loss = sum_h [(1 - eps - eps/(n_h-1)) * nll_h + eps/(n_h-1) * sum_c -log p_h(c)]
                      + log_normalizer
             Its implied joint target gives the gold id (1-eps)^H and a sibling ~eps/K_H.
With a single level and no normaliser (softmax, MHS) the two are the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from ..defaults import SMOOTHINGS
from ..errors import MHCEConfigError
from .base import LossTerms, masked_log_softmax



@dataclass
class FactoredLoss:
    """Per-token results, all (N,): loss, joint nll (nats), per-level and joint correctness."""

    loss: Tensor
    nll: Tensor
    level_correct: List[Tensor]
    joint_correct: Tensor


def smoothed_nll(nll: Tensor, neg_sum: Tensor, n_classes: Tensor | float, epsilon: float) -> Tensor:
    """fairseq's (1 - eps - eps_i) * nll + eps_i * neg_sum with eps_i = eps / (n - 1); 0 where n = 1."""
    if not isinstance(n_classes, Tensor):  # host arithmetic: a python number never goes to the device
        if n_classes <= 1:
            return torch.zeros_like(nll)
        eps_i = epsilon / (n_classes - 1)
        return (1.0 - epsilon - eps_i) * nll + eps_i * neg_sum
    eps_i = epsilon / (n_classes.to(nll.dtype) - 1).clamp(min=1)
    loss = (1.0 - epsilon - eps_i) * nll + eps_i * neg_sum
    return torch.where(n_classes > 1, loss, torch.zeros_like(loss))


def factored_loss(terms: LossTerms, epsilon: float, smoothing: str = "joint") -> FactoredLoss:
    """Exact joint nll, and the label-smoothed loss of the module docstring."""
    if smoothing not in SMOOTHINGS:
        raise MHCEConfigError(f"--mhce-smoothing {smoothing!r} is unknown: choose one of {', '.join(SMOOTHINGS)}.")
    single = len(terms.levels) == 1 and terms.log_normalizer is None
    per_level = epsilon > 0 and (smoothing == "per-level" or single)
    if epsilon > 0 and not per_level and terms.log_prob_sum is None:
        raise MHCEConfigError(
            "joint label smoothing needs the layer's log_prob_sum: call loss_terms(x, y, sum_groups=M).")
    loss = None
    nll = None
    level_correct: List[Tensor] = []
    for level in terms.levels:
        valid = level.valid
        if valid is not None:
            valid = valid.expand_as(level.logits)
        lprobs = masked_log_softmax(level.logits, valid)  # (N, C) fp32
        level_nll = -lprobs.gather(1, level.target.unsqueeze(1)).squeeze(1)
        correct = lprobs.argmax(dim=-1) == level.target
        if level.active is not None:  # tokens whose path ends before this level
            level_nll = level_nll.masked_fill(~level.active, 0.0)
            correct = correct | ~level.active
        if per_level:
            finite = lprobs if valid is None else lprobs.masked_fill(~valid, 0.0)
            n_valid = lprobs.size(1) if valid is None else valid.sum(-1)
            level_loss = smoothed_nll(level_nll, -finite.sum(dim=-1), n_valid, epsilon)
            if level.active is not None:
                level_loss = level_loss.masked_fill(~level.active, 0.0)
            loss = level_loss if loss is None else loss + level_loss
        nll = level_nll if nll is None else nll + level_nll
        level_correct.append(correct)
    if terms.log_normalizer is not None:
        nll = nll + terms.log_normalizer
        loss = None if loss is None else loss + terms.log_normalizer
    if epsilon == 0:
        loss = nll
    elif not per_level:
        if terms.num_classes < 2:
            raise MHCEConfigError(f"LossTerms.num_classes must be V >= 2 with a log_prob_sum, got {terms.num_classes}.")
        loss = smoothed_nll(nll, -terms.log_prob_sum.to(nll.dtype), float(terms.num_classes), epsilon)
    joint = torch.stack(level_correct, 0).all(0)
    return FactoredLoss(loss=loss, nll=nll, level_correct=level_correct, joint_correct=joint)
