"""A factored layer seen through a code layout: target ids in, target ids out.

The wrapped layer scores code positions; the layout pi (mhce_nmt.layout) says which position
each id takes, p(v | x) = p_layer(pi(v) | x). This is the one place where ids and positions meet:
  loss_terms(x, y)      the layer's levels on the digits of pi(y)    (pad is filtered on ids before)
  log_probs(x)[:, v]    = the layer's column pi(v)
  candidates(x, g)      the layer's positions p, returned as ids pi^-1(p)
  score(x, ids)         = the layer's score of pi(ids)
so the layers' math, the loss, coarse-to-fine decoding and their tests are those of the identity
layout. log_prob_sum (the uniform term of joint smoothing) sums over every id, so pi leaves it
as it is. pi is a persistent buffer (`layout`): a checkpoint decodes without the layout file.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from torch import Tensor, nn

from ..layout import check_layout, inverse_layout
from .base import FactoredOutput, LossTerms


class PermutedOutput(FactoredOutput):
    """`layer` (over code positions) with ids mapped through the layout pi (id -> position)."""

    def __init__(self, layer: FactoredOutput, layout: Tensor, fixed: int):
        super().__init__(layer.codec, layer.input_dim)
        self.layer = layer
        self.fixed = fixed
        self.supports_coarse_to_fine = layer.supports_coarse_to_fine
        layout = check_layout(layout, layer.codec.vocab_size, fixed, "the code layout")
        self.register_buffer("layout", layout.clone(), persistent=True)
        self.register_buffer("ids_at", inverse_layout(layout), persistent=False)  # pi^-1
        self.register_load_state_dict_post_hook(PermutedOutput._layout_loaded)

    @staticmethod
    def _layout_loaded(module: nn.Module, incompatible_keys: object) -> None:
        """A loaded pi (a checkpoint's) is checked like a file's and its inverse rebuilt."""
        check_layout(module.layout, module.codec.vocab_size, module.fixed, "the checkpoint's code layout")
        module.ids_at.copy_(inverse_layout(module.layout))

    def positions(self, ids: Tensor) -> Tensor:
        """pi(ids), any shape."""
        return self.layout[ids]

    def ids(self, positions: Tensor) -> Tensor:
        """pi^-1(positions), any shape."""
        return self.ids_at[positions]

    def loss_terms(self, x: Tensor, target: Tensor, sum_groups: Optional[int] = None) -> LossTerms:
        return self.layer.loss_terms(x, self.positions(target), sum_groups)

    def full_log_probs(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """(N, V) in id order: column v is the layer's column pi(v)."""
        return self.layer.full_log_probs(x, temperature).index_select(1, self.layout)

    def resolve_topk(self, topk_groups: Optional[Sequence[int]]) -> List[int]:
        return self.layer.resolve_topk(topk_groups)

    def candidates(self, x: Tensor, topk_groups: Optional[Sequence[int]] = None,
                   temperature: float = 1.0) -> Tuple[Tensor, Tensor]:
        """The layer's candidates as ids (slots that are no token stay -inf)."""
        positions, scores = self.layer.candidates(x, topk_groups, temperature)
        return self.ids(positions), scores

    def score(self, x: Tensor, ids: Tensor, temperature: float = 1.0) -> Tensor:
        return self.layer.score(x, self.positions(ids), temperature)
