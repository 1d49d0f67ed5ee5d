"""Mixed-radix label codec: target id <-> one digit per classifier head.

id = sum_h d_h * S_h with strides S_h = prod(K_{h+1..H}); d_1 is the most significant digit.
prod(K) >= V; codes >= V are invalid. A *prefix of length h* is (d_1..d_h), numbered
p_h = id // S_h; it is valid when it is the prefix of at least one id < V, i.e. p_h < P_h with
P_h = ceil(V / S_h). Plain torch, no fairseq import.
The "ids" of this module are code positions: they are the target ids themselves unless a code
layout pi (layout.py, --mhce-layout) puts id v on position pi(v).
"""
from __future__ import annotations

import math
from typing import Iterable, List, Optional, Sequence, Union

import torch

from .errors import MHCEConfigError


class CodecError(MHCEConfigError):
    """Bad codec configuration; the message names the problem and the fix."""


def parse_head_sizes(spec: Union[str, Sequence[int]]) -> List[int]:
    """Parse '200,200' (or a list of ints) into head sizes; reject malformed specs clearly."""
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.replace("x", ",").split(",")]
        if not spec.strip() or any(p == "" for p in parts):
            raise CodecError(
                f"--mhce-heads {spec!r} is malformed: give comma-separated integers such as "
                "'200,200', or leave it out and set --mhce-num-heads."
            )
        sizes = []
        for p in parts:
            try:
                sizes.append(int(p))
            except ValueError:
                raise CodecError(
                    f"--mhce-heads {spec!r} is malformed: {p!r} is not an integer; give "
                    "comma-separated integers such as '200,200'."
                ) from None
        return sizes
    sizes = list(spec)
    if not sizes or any(not isinstance(k, int) or isinstance(k, bool) for k in sizes):
        raise CodecError(f"head sizes {spec!r} must be a non-empty list of integers such as [200, 200].")
    return sizes


def _ceil_root(n: int, h: int) -> int:
    """Smallest integer r with r**h >= n (exact integer arithmetic)."""
    r = max(1, int(round(n ** (1.0 / h))))
    while r ** h < n:
        r += 1
    while r > 1 and (r - 1) ** h >= n:
        r -= 1
    return r


def auto_head_sizes(vocab_size: int, num_heads: int) -> List[int]:
    """Balanced head sizes near V^(1/H) with prod(K) >= V and little waste.

    Greedy: K_h = ceil((V / prod(K_<h))^(1/(H-h+1))), so later heads shrink to cut waste.
    """
    if vocab_size < 2:
        raise CodecError(f"vocabulary size {vocab_size} is too small for a factored output (need >= 2).")
    if num_heads < 1:
        raise CodecError(f"--mhce-num-heads {num_heads} must be >= 1.")
    if num_heads > 1 and 2 ** (num_heads - 1) >= vocab_size:
        max_heads = max(1, math.ceil(math.log2(vocab_size)))
        raise CodecError(
            f"--mhce-num-heads {num_heads} is too many for a vocabulary of {vocab_size}: some head "
            f"would never be used. Use at most {max_heads} heads."
        )
    sizes: List[int] = []
    covered = 1
    for h in range(num_heads):
        remaining = num_heads - h
        need = -(-vocab_size // covered)  # ceil(V / covered)
        k = max(2, _ceil_root(need, remaining))
        sizes.append(k)
        covered *= k
    return sizes


class LabelCodec:
    """Mixed-radix digits for ids 0..V-1 with head sizes K_1..K_H (d_1 most significant)."""

    def __init__(self, vocab_size: int, head_sizes: Sequence[int]):
        sizes = parse_head_sizes(head_sizes)
        if vocab_size < 2:
            raise CodecError(f"vocabulary size {vocab_size} is too small for a factored output (need >= 2).")
        bad = [k for k in sizes if k < 2]
        if bad:
            raise CodecError(
                f"head sizes {sizes} contain {bad}: every head needs at least 2 classes. "
                "Use fewer, larger heads."
            )
        total = math.prod(sizes)
        if total < vocab_size:
            raise CodecError(
                f"head sizes {'x'.join(map(str, sizes))} = {total} cannot code a target vocabulary of "
                f"{vocab_size}: the product of --mhce-heads must be >= {vocab_size} "
                f"(e.g. --mhce-heads {','.join(map(str, auto_head_sizes(vocab_size, len(sizes))))}), "
                "or drop --mhce-heads to choose sizes automatically."
            )
        if len(sizes) > 1 and math.prod(sizes[1:]) >= vocab_size:
            raise CodecError(
                f"head sizes {'x'.join(map(str, sizes))} are too many for a vocabulary of {vocab_size}: "
                f"the heads after the first already code {math.prod(sizes[1:])} >= {vocab_size} ids, so "
                "the first head would only ever predict 0. Remove a head or shrink the others."
            )
        self.vocab_size = int(vocab_size)
        self.head_sizes: List[int] = sizes
        self.num_heads = len(sizes)
        # strides[h] = prod(K_{h+1..H}); S_H = 1
        self.strides: List[int] = [math.prod(sizes[h + 1:]) for h in range(self.num_heads)]
        # num_prefixes[h] = P_{h+1}: valid prefixes of length h+1 (the last one equals V)
        self.num_prefixes: List[int] = [-(-vocab_size // s) for s in self.strides]

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build(cls, vocab_size: int, head_sizes: Optional[Union[str, Sequence[int]]] = None,
              num_heads: int = 2) -> "LabelCodec":
        """Explicit head sizes when given, otherwise automatic sizes for `num_heads` heads."""
        if head_sizes is not None and (not isinstance(head_sizes, str) or head_sizes.strip()):
            return cls(vocab_size, parse_head_sizes(head_sizes))
        return cls(vocab_size, auto_head_sizes(vocab_size, num_heads))

    @property
    def capacity(self) -> int:
        """prod(K): number of codes, valid or not."""
        return math.prod(self.head_sizes)

    def spec(self) -> List[int]:
        """[V, K_1, ..., K_H]: what a checkpoint stores to rebuild exactly this codec."""
        return [self.vocab_size, *self.head_sizes]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelCodec) and self.spec() == other.spec()

    def __repr__(self) -> str:
        return f"LabelCodec(V={self.vocab_size}, heads={'x'.join(map(str, self.head_sizes))})"

    # ---- digits -------------------------------------------------------------------------
    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (...,) -> digits (..., H)."""
        digits = [(ids // s) % k for s, k in zip(self.strides, self.head_sizes)]
        return torch.stack(digits, dim=-1)

    def decode(self, digits: torch.Tensor) -> torch.Tensor:
        """digits (..., H) -> ids (...,); the result may be >= V (an invalid code)."""
        ids = torch.zeros_like(digits[..., 0])
        for h, s in enumerate(self.strides):
            ids = ids + digits[..., h] * s
        return ids

    def prefix(self, ids: torch.Tensor, length: int) -> torch.Tensor:
        """Number of the length-`length` prefix of each id: ids // S_length (length in 1..H)."""
        return ids // self.strides[length - 1]

    def is_valid(self, ids: torch.Tensor) -> torch.Tensor:
        """True where a code is a real token id (0 <= id < V)."""
        return (ids >= 0) & (ids < self.vocab_size)

    def child_valid(self, level: int, parents: torch.Tensor) -> torch.Tensor:
        """parents (...,) prefixes of length level-1 -> (..., K_level) mask of valid children.

        Child c of parent p is the length-`level` prefix p*K + c, valid iff < P_level.
        """
        k = self.head_sizes[level - 1]
        children = parents.unsqueeze(-1) * k + torch.arange(k, device=parents.device)
        return children < self.num_prefixes[level - 1]

    def subtree_sizes(self, level: int) -> torch.Tensor:
        """(P_level,) number of valid ids below each valid prefix of length `level` (1..H):
        min(S_level, V - p * S_level)."""
        stride = self.strides[level - 1]
        prefixes = torch.arange(self.num_prefixes[level - 1])
        return (self.vocab_size - prefixes * stride).clamp(max=stride)

    def digit_counts(self, head: int) -> torch.Tensor:
        """(K_head,) number of valid ids whose digit at `head` (1..H) is c, for each c."""
        digits = self.encode(self.all_ids())[:, head - 1]
        return torch.bincount(digits, minlength=self.head_sizes[head - 1])

    def all_ids(self, device: Optional[torch.device] = None) -> torch.Tensor:
        """(V,) arange of valid ids."""
        return torch.arange(self.vocab_size, device=device)


def check_shortlist(vocab_size: int, shortlist: int) -> None:
    """A shortlist of N ids leaves at least 2 ids to the factored tail."""
    if not 1 <= shortlist <= vocab_size - 2:
        raise CodecError(
            f"--mhce-shortlist {shortlist} is out of range for a vocabulary of {vocab_size}: it "
            f"must be between 1 and {vocab_size - 2} (at least 2 ids must stay in the factored "
            "tail), or 0 for no shortlist.")


class ShortlistCodec:
    """ids < N are level-1 classes of their own (a frequent-token shortlist); id >= N is the tail
    id t = id - N, written in the mixed-radix digits of `tail` (a LabelCodec over V - N ids).

    fairseq dictionaries put the special symbols first and then sort by frequency, so ids < N are
    the specials and the most frequent tokens. Coarse levels and their prefixes are the tail's.
    """

    def __init__(self, vocab_size: int, shortlist: int, tail: LabelCodec):
        check_shortlist(vocab_size, shortlist)
        if tail.vocab_size != vocab_size - shortlist:
            raise CodecError(f"tail codec {tail} must code the {vocab_size - shortlist} ids past the shortlist.")
        self.vocab_size = int(vocab_size)
        self.shortlist = int(shortlist)
        self.tail = tail

    @classmethod
    def build(cls, vocab_size: int, shortlist: int, head_sizes: Optional[Union[str, Sequence[int]]] = None,
              num_heads: int = 2) -> "ShortlistCodec":
        """The tail codec over V - N ids from explicit or automatic head sizes."""
        check_shortlist(vocab_size, shortlist)
        return cls(vocab_size, shortlist, LabelCodec.build(vocab_size - shortlist, head_sizes, num_heads))

    @property
    def head_sizes(self) -> List[int]:
        return self.tail.head_sizes

    @property
    def num_heads(self) -> int:
        return self.tail.num_heads

    @property
    def num_prefixes(self) -> List[int]:
        return self.tail.num_prefixes

    def spec(self) -> List[int]:
        """[V, N, K_1, ..., K_H]."""
        return [self.vocab_size, self.shortlist, *self.tail.head_sizes]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShortlistCodec) and self.spec() == other.spec()

    def __repr__(self) -> str:
        return (f"ShortlistCodec(V={self.vocab_size}, shortlist={self.shortlist}, "
                f"tail heads={'x'.join(map(str, self.tail.head_sizes))})")


def codec_from_spec(spec: Iterable[int]) -> LabelCodec:
    """Inverse of LabelCodec.spec()."""
    values = [int(v) for v in spec]
    return LabelCodec(values[0], values[1:])
