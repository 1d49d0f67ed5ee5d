"""MHE: multi-head embedding cascade, coarse to fine.

Level 1 scores the K_1 first digits with Linear(d, K_1). Level h > 1 scores the K_h children of
the prefix (d_1..d_{h-1}) as <P_h x, E_h[child]> + b_h[child], where E_h (P_h, e) embeds every
valid prefix of length h (the last level has one row per token). Each level is a softmax over the
valid children, so log p(y|x) = sum_h log p(d_h | d_<h, x) exactly (chain rule).

The uniform term of joint smoothing, with n(p) the number of valid ids below prefix p:
  sum_{v<V} log p(v|x) = sum_h sum_{q: prefix of length h-1} f_h(q),
  f_h(q) = sum_{c child of q} n(c) log p(c | q, x).
Level 1 (q = the empty prefix) is exact. For h > 1 every q needs its children's normaliser
(a full softmax in all), so the term of the target's own parent q_y (already scored) is exact
and the rest is estimated per token from D parents q_1..q_D drawn uniformly from the P_{h-1} - 1
others (with replacement), scored like the target's own parent:
  sum_{q != q_y} f_h(q) ~ ((P_{h-1} - 1) / D) * sum_j f_h(q_j)   (unbiased).
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

    The state projection P_h is Linear(d, e) when e != d and the identity when e = d: with free
    embeddings a linear P_h would be absorbed by E_h (x . P^T E = x . (P E)), and tied it scores
    x . W[v] like fairseq's tied softmax (a random P_h there slowed learning: README, issue 12).

    Tied, the last level's rows are the decoder input embeddings W (V_dict, e): leaf id t is row
    tied_row_offset + t, so a shortlist's tail (ids past N_s) ties with offset N_s and the first
    N_s rows are left to the shortlist (`head_rows`).
    """

    def __init__(self, codec: LabelCodec, input_dim: int, embed_dim: Optional[int] = None,
                 tied_label_weight: Optional[nn.Parameter] = None, tied_row_offset: int = 0):
        super().__init__(codec, input_dim)
        if codec.num_heads < 2:
            raise MHCEConfigError(
                f"--mhce-mode mhe needs at least 2 heads, got {codec}: use --mhce-num-heads 2 "
                "or more (with one head it is the plain softmax)."
            )
        embed_dim = embed_dim or input_dim
        tied_rows = codec.vocab_size + tied_row_offset
        if tied_label_weight is not None and tuple(tied_label_weight.shape) != (tied_rows, embed_dim):
            raise MHCEConfigError(
                f"--mhe-tie-label-embeddings needs decoder input embeddings of shape "
                f"({tied_rows}, {embed_dim}), got {tuple(tied_label_weight.shape)}: set "
                "--mhce-embed-dim to the decoder embedding dim."
            )
        self.embed_dim = embed_dim
        self.tied_row_offset = tied_row_offset if tied_label_weight is not None else 0
        self.level1 = nn.Linear(input_dim, codec.head_sizes[0])
        nn.init.normal_(self.level1.weight, mean=0.0, std=input_dim ** -0.5)
        nn.init.zeros_(self.level1.bias)
        projections, embeddings, biases = [], [], []
        for level in range(2, codec.num_heads + 1):
            rows = codec.num_prefixes[level - 1]
            tied = tied_label_weight is not None and level == codec.num_heads
            if embed_dim != input_dim:
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
        for level in range(1, codec.num_heads + 1):
            self.register_buffer(f"subtree_sizes_{level}", codec.subtree_sizes(level), persistent=False)
        self.register_buffer("level1_valid", codec.child_valid(1, torch.zeros((), dtype=torch.long)),
                             persistent=False)
        # P_1 == K_1: every first digit is valid, so level 1 needs no mask (saves (N, K_1) work)
        self._level1_all_valid = codec.num_prefixes[0] == codec.head_sizes[0]

    @property
    def subtree_sizes(self) -> List[Tensor]:
        """Per level 1..H: (P_h,) valid ids below each prefix (the codec's, as buffers)."""
        return [getattr(self, f"subtree_sizes_{h}") for h in range(1, self.codec.num_heads + 1)]

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

    def table(self, level: int) -> Tensor:
        """(P_level, e) label embeddings of level >= 2 (a view past the offset when tied)."""
        table = self.embeddings[level - 2]
        return table[self.tied_row_offset:] if self.tied_row_offset and level == self.codec.num_heads else table

    def head_rows(self) -> Tensor:
        """(tied_row_offset, e): the tied table's rows before this layer's ids (a shortlist's)."""
        return self.embeddings[-1][: self.tied_row_offset]

    def _children(self, level: int, z: Tensor, parents: Tensor, rows: Optional[Tensor] = None) -> Tensor:
        """z (M, e) (or (N, e) and rows (M,)), parents (M,) -> (M, K_level) raw scores of each
        parent's children."""
        parents = parents.clamp(max=self.codec.num_prefixes[level - 2] - 1)
        return grouped_child_scores(z, parents, self.table(level), self.biases[level - 2],
                                    self.codec.head_sizes[level - 1], rows)

    def loss_terms(self, x: Tensor, target: Tensor, sum_groups: Optional[int] = None) -> LossTerms:
        """Teacher forcing: level h scores the children of the target's own prefix only; with
        sum_groups, also the estimate of sum_{v<V} log p(v|x) of the module docstring."""
        self.check_input(x)
        levels = [LevelScores(self.level1(x), self.codec.prefix(target, 1), self._level1_mask())]
        log_prob_sum = None
        if sum_groups is not None:
            log_prob_sum = self._weighted_sum(1, levels[0].logits, levels[0].valid,
                                              torch.zeros_like(target).unsqueeze(1)).squeeze(1)
        for level in range(2, self.codec.num_heads + 1):
            parents = self.codec.prefix(target, level - 1)
            z = self.projections[level - 2](x)
            scores = self._children(level, z, parents)
            digit = self.codec.prefix(target, level) % self.codec.head_sizes[level - 1]
            levels.append(LevelScores(scores, digit, self._children_valid(level, parents)))
            if sum_groups is not None:
                log_prob_sum = log_prob_sum + self._weighted_sum(
                    level, scores, levels[-1].valid, parents.unsqueeze(1)).squeeze(1)
                log_prob_sum = log_prob_sum + self._sampled_sum(level, z, parents, sum_groups)
        return LossTerms(levels=levels, log_prob_sum=log_prob_sum, num_classes=self.codec.vocab_size)

    def _weighted_sum(self, level: int, scores: Tensor, valid: Optional[Tensor], parents: Tensor) -> Tensor:
        """scores (M, W*K) of the children of parents (M, W) -> (M, W): f_level(parent) =
        sum_c n(c) log p(c | parent); at the last level n(c) is 1 for every valid child."""
        m, width = parents.shape
        k = self.codec.head_sizes[level - 1]
        if valid is not None:
            valid = valid.expand_as(scores).reshape(m * width, k)
        lp = masked_log_softmax(scores.reshape(m * width, k), valid)
        if level == self.codec.num_heads:  # leaves: invalid children are -inf in lp, count 0
            return (lp if valid is None else lp.masked_fill(~valid, 0.0)).sum(-1).view(m, width)
        children = parents.reshape(-1, 1) * k + torch.arange(k, device=parents.device)  # (M*W, K)
        sizes = self.subtree_sizes[level - 1]
        counts = torch.where(children < sizes.numel(), sizes[children.clamp(max=sizes.numel() - 1)],
                             torch.zeros_like(children)).to(lp.dtype)
        return (lp.masked_fill(counts == 0, 0.0) * counts).sum(-1).view(m, width)

    def sample_parents(self, level: int, parents: Tensor, draws: int) -> Tensor:
        """parents (N,) -> (N, draws) prefixes of length level-1, each uniform over the valid
        ones other than the row's own parent (with replacement)."""
        total = self.codec.num_prefixes[level - 2]
        r = torch.randint(0, total - 1, (parents.numel(), draws), device=parents.device)
        return r + (r >= parents.unsqueeze(1)).long()

    def _sampled_sum(self, level: int, z: Tensor, parents: Tensor, draws: int) -> Tensor:
        """(N,) estimate of sum_{q != parent} f_level(q): from `draws` parents per row drawn by
        sample_parents and scored by the grouped products (unbiased, cost draws x one level);
        draws = 0: every parent, one dense (N, P*K) product (exact, the cost of a full softmax)."""
        total = self.codec.num_prefixes[level - 2]
        n = z.size(0)
        if total == 1:
            return z.new_zeros(n, dtype=torch.float32)
        if draws == 0:
            k = self.codec.head_sizes[level - 1]
            every = torch.arange(total, device=z.device)
            children = (every.unsqueeze(1) * k + torch.arange(k, device=z.device)).view(-1)  # (P*K,)
            rows = children.clamp(max=self.codec.num_prefixes[level - 1] - 1)
            table, bias = self.table(level), self.biases[level - 2]
            scores = z @ table.index_select(0, rows).t() + bias.index_select(0, rows)  # (N, P*K)
            valid = (children < self.codec.num_prefixes[level - 1]).unsqueeze(0)
            f = self._weighted_sum(level, scores, valid, every.unsqueeze(0).expand(n, -1))  # (N, P)
            return f.masked_fill(every.unsqueeze(0) == parents.unsqueeze(1), 0.0).sum(-1)
        drawn = self.sample_parents(level, parents, draws).reshape(-1)  # (N*D,)
        rows = torch.arange(n, device=z.device).repeat_interleave(draws)
        scores = self._children(level, z, drawn, rows)  # (N*D, K)
        f = self._weighted_sum(level, scores, self._children_valid(level, drawn), drawn.unsqueeze(1))
        return f.view(n, draws).sum(-1) * ((total - 1) / draws)

    def level1_scores(self, x: Tensor) -> Tensor:
        scores = self.level1(x)
        mask = self._level1_mask()
        return scores if mask is None else scores.masked_fill(~mask, float("-inf"))

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
            scores = state.states[level - 2] @ self.table(level).t() + self.biases[level - 2]
            padded = scores.new_full((x.size(0), parents * k), float("-inf"))
            padded[:, : scores.size(1)] = scores
            lp = masked_log_softmax(padded.view(-1, parents, k), None, temperature)
            joint = (joint.unsqueeze(-1) + lp).view(x.size(0), -1)[:, : self.codec.num_prefixes[level - 1]]
        return joint
