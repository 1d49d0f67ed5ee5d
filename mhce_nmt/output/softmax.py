"""The V-way softmax as a FactoredOutput: the baseline in every test and benchmark."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..codec import LabelCodec
from ..errors import MHCEConfigError
from .base import FactoredOutput, LevelScores, LossTerms


class SoftmaxOutput(FactoredOutput):
    """log p(y|x) = log_softmax(W x)[y], W: (V, d), no bias (as fairseq's output projection)."""

    def __init__(self, codec: LabelCodec, input_dim: int, weight: nn.Parameter | None = None):
        super().__init__(codec, input_dim)
        if weight is None:
            weight = nn.Parameter(torch.empty(codec.vocab_size, input_dim))
            nn.init.normal_(weight, mean=0.0, std=input_dim ** -0.5)
        if tuple(weight.shape) != (codec.vocab_size, input_dim):
            raise MHCEConfigError(
                f"shared output weight has shape {tuple(weight.shape)}, expected "
                f"({codec.vocab_size}, {input_dim}): the embedding and the target dictionary disagree."
            )
        self.weight = weight

    def loss_terms(self, x: Tensor, target: Tensor, sum_groups: Optional[int] = None) -> LossTerms:
        """One level: the full (N, V) logits (sum_groups is not needed: one level)."""
        self.check_input(x)
        return LossTerms(levels=[LevelScores(logits=x @ self.weight.t(), target=target)])

    def full_log_probs(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """(N, V) = log_softmax(x W^T / T) in fp32."""
        logits = (x @ self.weight.t()).float()
        if temperature != 1.0:
            logits = logits / temperature
        return torch.log_softmax(logits, dim=-1)
