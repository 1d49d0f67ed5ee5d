"""MHE: multi-head embedding cascade, coarse to fine.

Level 1 scores the K_1 first digits with Linear(d, K_1). Level h > 1 scores the K_h children of
the prefix (d_1..d_{h-1}) as <P_h x, E_h[child]> + b_h[child], where E_h (P_h, e) embeds every
valid prefix of length h (the last level has one row per token). Each level is a softmax over the
valid children, so log p(y|x) = sum_h log p(d_h | d_<h, x) exactly (chain rule).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor, nn

from ..codec import LabelCodec
from ..errors import MHCEConfigError
from .base import CascadeOutput, LevelScores, LossTerms, mask_invalid_children_, masked_log_softmax
from .grouped import grouped_child_scores


@dataclass
class _CascadeState:
    level1: Tensor  # (N, K_1) fp32 log-probs
    states: List[Tensor]  # levels 2..H: (N, e)
    temperature: float


class MHEOutput(CascadeOutput):
    """Heads in series; training touches only the target's own prefixes (cost ~ sum K, not V).

    The state projection P_h is Linear(d, e) when e != d or the last level is tied to the input
    embeddings; with e = d and free embeddings it is the identity, since a linear P_h would be
    absorbed by E_h (x . P^T E = x . (P E)).
    """

    def __init__(self, codec: LabelCodec, input_dim: int, embed_dim: Optional[int] = None,
                 tied_label_weight: Optional[nn.Parameter] = None):
        super().__init__(codec, input_dim)
        if codec.num_heads < 2:
            raise MHCEConfigError(
                f"--mhce-mode mhe needs at least 2 heads, got {codec}: use --mhce-num-heads 2 "
                "or more (with one head it is the plain softmax)."
            )
        embed_dim = embed_dim or input_dim
        if tied_label_weight is not None and tuple(tied_label_weight.shape) != (codec.vocab_size, embed_dim):
            raise MHCEConfigError(
                f"--mhe-tie-label-embeddings needs decoder input embeddings of shape "
                f"({codec.vocab_size}, {embed_dim}), got {tuple(tied_label_weight.shape)}: set "
                "--mhce-embed-dim to the decoder embedding dim."
            )
        self.embed_dim = embed_dim
        self.level1 = nn.Linear(input_dim, codec.head_sizes[0])
        nn.init.normal_(self.level1.weight, mean=0.0, std=input_dim ** -0.5)
        nn.init.zeros_(self.level1.bias)
        projections, embeddings, biases = [], [], []
        for level in range(2, codec.num_heads + 1):
            rows = codec.num_prefixes[level - 1]
            tied = tied_label_weight is not None and level == codec.num_heads
            if embed_dim != input_dim or tied:
                projections.append(nn.Linear(input_dim, embed_dim))
            else:
                projections.append(nn.Identity())
            if tied:
                embeddings.append(tied_label_weight)
            else:
                table = nn.Parameter(torch.empty(rows, embed_dim))
                nn.init.normal_(table, mean=0.0, std=embed_dim ** -0.5)
                embeddings.append(table)
            biases.append(nn.Parameter(torch.zeros(rows)))
        self.projections = nn.ModuleList(projections)
        self.embeddings = nn.ParameterList(embeddings)
        self.biases = nn.ParameterList(biases)
        self.register_buffer("codec_spec", torch.tensor(codec.spec()), persistent=True)
        self.register_buffer("level1_valid", codec.child_valid(1, torch.zeros((), dtype=torch.long)),
                             persistent=False)
        # P_1 == K_1: every first digit is valid, so level 1 needs no mask (saves (N, K_1) work)
        self._level1_all_valid = codec.num_prefixes[0] == codec.head_sizes[0]

    def _level1_mask(self) -> Optional[Tensor]:
        return None if self._level1_all_valid else self.level1_valid

    def _children_valid(self, level: int, parents: Tensor) -> Optional[Tensor]:
        """(M, K_level) validity of the children of parents (M,); None when all are valid.

        Only parents >= P_level // K_level have invalid children; on CPU a max over the parents
        (no host sync there) usually spares the (M, K) mask and the masked ops it costs later.
        """
        full = self.codec.num_prefixes[level - 1] // self.codec.head_sizes[level - 1]
        if parents.device.type == "cpu" and (parents.numel() == 0 or int(parents.max()) < full):
            return None
        return self.codec.child_valid(level, parents)

    def _children(self, level: int, z: Tensor, parents: Tensor, rows: Optional[Tensor] = None) -> Tensor:
        """z (M, e) (or (N, e) and rows (M,)), parents (M,) -> (M, K_level) raw scores of each
        parent's children."""
        parents = parents.clamp(max=self.codec.num_prefixes[level - 2] - 1)
        return grouped_child_scores(z, parents, self.embeddings[level - 2], self.biases[level - 2],
                                    self.codec.head_sizes[level - 1], rows)

    def loss_terms(self, x: Tensor, target: Tensor) -> LossTerms:
        """Teacher forcing: level h scores the children of the target's own prefix only."""
        self.check_input(x)
        levels = [LevelScores(self.level1(x), self.codec.prefix(target, 1), self._level1_mask())]
        for level in range(2, self.codec.num_heads + 1):
            parents = self.codec.prefix(target, level - 1)
            scores = self._children(level, self.projections[level - 2](x), parents)
            digit = self.codec.prefix(target, level) % self.codec.head_sizes[level - 1]
            levels.append(LevelScores(scores, digit, self._children_valid(level, parents)))
        return LossTerms(levels=levels)

    def prepare(self, x: Tensor, temperature: float) -> _CascadeState:
        lp1 = masked_log_softmax(self.level1(x), self._level1_mask(), temperature)
        states = [proj(x) for proj in self.projections]
        return _CascadeState(level1=lp1, states=states, temperature=temperature)

    def child_log_probs(self, state: _CascadeState, level: int, rows: Tensor, parents: Tensor) -> Tensor:
        if level == 1:
            return state.level1.index_select(0, rows)
        scores = self._children(level, state.states[level - 2], parents, rows)
        # only the rows of a partial (or invalid) prefix have invalid children: mask just those
        return masked_log_softmax(mask_invalid_children_(self.codec, scores, level, parents), None,
                                  state.temperature)

    def full_log_probs(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """(N, V), level by level: joint_h = joint_{h-1} (x) log p(children), cut to P_h."""
        state = self.prepare(x, temperature)
        joint = state.level1[:, : self.codec.num_prefixes[0]]
        for level in range(2, self.codec.num_heads + 1):
            k = self.codec.head_sizes[level - 1]
            parents = joint.size(1)
            scores = state.states[level - 2] @ self.embeddings[level - 2].t() + self.biases[level - 2]
            padded = scores.new_full((x.size(0), parents * k), float("-inf"))
            padded[:, : scores.size(1)] = scores
            lp = masked_log_softmax(padded.view(-1, parents, k), None, temperature)
            joint = (joint.unsqueeze(-1) + lp).view(x.size(0), -1)[:, : self.codec.num_prefixes[level - 1]]
        return joint
