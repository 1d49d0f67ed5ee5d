"""Factored input embeddings: an id's vector from a few small tables (plain torch, no fairseq).

The codec (codec.py) that writes target ids for the output layer also writes them for the input.
Code position p of id v (p = v, or p = pi(v) under a code layout: `PermutedEmbedding`), a
shortlist of N rows S (N, d) (N = 0: none) and one table D_h (K_h, d) per digit of the tail codec:
  e(v) = S[p] if p < N, else sum_h D_h[d_h(p - N)];   e(pad) = 0
(compositional embeddings, Shi et al. 2020, "Compositional Embeddings Using Complementary
Partitions": the digits are complementary partitions, so no two ids share all their rows).
(N + sum_h K_h) x d parameters instead of V x d.

The combination is the sum: it is linear in each table, so an MHP layer whose heads are the D_h
scores id v (tail id t) with sum_h <D_h[d_h(t)], x> + b_h[d_h(t)] = <e(v), x> + b(v): fairseq's
tied softmax over this table, plus a bias. A concatenation would give each digit d / H coordinates and leave
nothing to tie the heads to; a product is not linear in any one table.

What is shared is decided by transformer_mhce (adapters/model.py), which calls
`tie_heads_to_digit_tables` below: `digit_weight` (the D_h,
head after head, (sum K, d)) is the MHP heads' weight with --share-decoder-input-output-embed
(implied by --share-all-embeddings); `shortlist_weight` (S) holds the shortlist's output rows with
--mhce-tie-shortlist (both index positions, so any layout keeps them in step); with
--share-all-embeddings the encoder and decoder use one module. MHE's label embeddings of levels
h > 1 embed prefixes (P_h rows, one per tail id at the last level), not digits: none of them is
shared.

Like fairseq's Embedding (nn.Embedding(padding_idx=pad), normal(0, d^-1/2) rows, pad row zero),
pad embeds to zero and its lookups give no gradient; each D_h starts at normal(0, (H d)^-1/2), so a
tail id's sum has the variance of a fairseq row. fairseq's encoder and decoder scale the result by
sqrt(d) (embed_scale), as they do nn.Embedding's.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .codec import LabelCodec, ShortlistCodec
from .errors import MHCEConfigError
from .output import FactoredOutput, ShortlistOutput


class FactoredEmbedding(nn.Module):
    """ids (...) of code positions -> (..., d) vectors e(v) of the module docstring; a drop-in for
    fairseq's token embedding (embedding_dim, padding_idx, num_embeddings)."""

    def __init__(self, codec: Union[LabelCodec, ShortlistCodec], embedding_dim: int, padding_idx: int):
        super().__init__()
        self.shortlist = codec.shortlist if isinstance(codec, ShortlistCodec) else 0
        self.tail = codec.tail if isinstance(codec, ShortlistCodec) else codec
        self.num_embeddings = codec.vocab_size
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.shortlist_weight: Optional[nn.Parameter] = None
        if self.shortlist:
            self.shortlist_weight = nn.Parameter(torch.empty(self.shortlist, embedding_dim))
            nn.init.normal_(self.shortlist_weight, mean=0.0, std=embedding_dim ** -0.5)
            if padding_idx < self.shortlist:
                nn.init.zeros_(self.shortlist_weight[padding_idx])  # as fairseq's Embedding
        sizes = self.tail.head_sizes
        self.digit_weight = nn.Parameter(torch.empty(sum(sizes), embedding_dim))
        nn.init.normal_(self.digit_weight, mean=0.0, std=(len(sizes) * embedding_dim) ** -0.5)
        offsets = torch.tensor([0] + sizes[:-1]).cumsum(0)  # D_h's first row in digit_weight
        self.register_buffer("digit_offsets", offsets, persistent=False)
        self.register_buffer("codec_spec", torch.tensor([codec.vocab_size, self.shortlist, *sizes]),
                             persistent=True)

    def digit_rows(self, tail_ids: Tensor) -> Tensor:
        """tail ids (...) -> (..., H) rows of digit_weight: offset_h + d_h(t)."""
        return self.tail.encode(tail_ids) + self.digit_offsets

    def forward(self, ids: Tensor) -> Tensor:
        tail_ids = (ids - self.shortlist).clamp(min=0)
        rows = self.digit_rows(tail_ids).reshape(-1, self.tail.num_heads)
        vectors = F.embedding_bag(rows, self.digit_weight, mode="sum").view(*ids.shape, self.embedding_dim)
        if self.shortlist:
            short = F.embedding(ids.clamp(max=self.shortlist - 1), self.shortlist_weight)
            vectors = torch.where((ids < self.shortlist).unsqueeze(-1), short, vectors)
        return vectors.masked_fill((ids == self.padding_idx).unsqueeze(-1), 0.0)

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}, "
                f"shortlist={self.shortlist}, heads={'x'.join(map(str, self.tail.head_sizes))}")


class PermutedEmbedding(nn.Module):
    """`embedding` (over code positions) seen through a code layout pi: e(v) = embedding(pi(v)),
    the id -> position map of the output layer's PermutedOutput (output/permuted.py).

    pi is a checked permutation that keeps the special symbols in place (layout.check_layout), so
    pad stays at position pad; it is a persistent buffer (`layout`), filled from a checkpoint."""

    def __init__(self, embedding: FactoredEmbedding, layout: Tensor):
        super().__init__()
        self.embedding = embedding
        self.num_embeddings = embedding.num_embeddings
        self.embedding_dim = embedding.embedding_dim
        self.padding_idx = embedding.padding_idx
        self.register_buffer("layout", layout.clone(), persistent=True)

    def forward(self, ids: Tensor) -> Tensor:
        return self.embedding(self.layout[ids])


def tie_heads_to_digit_tables(layer: FactoredOutput, embedding: FactoredEmbedding) -> None:
    """MHP's heads (sum K, d_out), of the layer or of a shortlist's tail, become the embedding's
    per-digit tables (sum K, d): one parameter, as fairseq ties its softmax to the embeddings."""
    heads = (layer.tail if isinstance(layer, ShortlistOutput) else layer).heads
    if heads.weight.shape != embedding.digit_weight.shape:
        raise MHCEConfigError(
            f"--mhce-embeddings factored with --mhce-mode mhp ties the heads to the per-digit input tables of "
            f"width {embedding.embedding_dim}, but the decoder output dim is {heads.in_features}: set "
            "--decoder-output-dim equal to --decoder-embed-dim, or drop --share-decoder-input-output-embed "
            "(--share-all-embeddings).")
    heads.weight = embedding.digit_weight
