"""Code layouts: which code position each target id is written with (plain torch, no fairseq).

A layout is a permutation pi of the V target ids. Id v takes the code of position pi(v): with a
shortlist of N, positions < N are the shortlist's one-digit paths and position N + t is the
tail's mixed-radix code of t (codec.py); without one, position p is the code of p. So
  p(v | x) = p_codes(pi(v) | x),
the layers score positions and `output.permuted.PermutedOutput` maps ids in and out. The
identity is fairseq's dictionary order (specials, then by frequency): today's codes. The first
`fixed` ids (fairseq's special symbols <s>, <pad>, </s>, <unk>) must keep their positions.

A layout file holds pi in id order, V integers (entry v = pi(v)): a text file with one integer
per line, a .npy array (numpy.save) or a .pt tensor (torch.save).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import torch
from torch import Tensor

from .errors import MHCEConfigError

MAKE_ONE = "write one with `python -m recipes.layouts` for this data-bin's target dictionary"


class LayoutError(MHCEConfigError):
    """A bad layout (file); the message names the problem and the fix."""


def identity_layout(vocab_size: int) -> Tensor:
    """pi(v) = v: the dictionary's own order."""
    return torch.arange(vocab_size)


def inverse_layout(layout: Tensor) -> Tensor:
    """pi^-1: the id at each position, (V,)."""
    return torch.empty_like(layout).scatter_(0, layout, torch.arange(layout.numel(), device=layout.device))


def first_moved(layout: Tensor, count: int) -> Optional[int]:
    """The smallest id v < count with pi(v) != v, or None when the first `count` ids stay."""
    moved = (layout[:count] != torch.arange(min(count, layout.numel()), device=layout.device)).nonzero()
    return int(moved[0]) if moved.numel() else None


def check_layout(layout: Tensor, vocab_size: int, fixed: int, source: str) -> Tensor:
    """`layout` as a (V,) int64 permutation of 0..V-1 that keeps ids < `fixed` in place;
    otherwise a LayoutError naming `source`, the problem and the fix."""
    if layout.dtype.is_floating_point or layout.dtype.is_complex or layout.dtype == torch.bool:
        raise LayoutError(f"{source} holds {layout.dtype} values: a layout is one integer position per "
                          f"target id; {MAKE_ONE}.")
    if layout.dim() != 1 or layout.numel() != vocab_size:
        raise LayoutError(f"{source} has {layout.numel()} positions (shape {tuple(layout.shape)}) but the "
                          f"target dictionary has {vocab_size} ids (its entries plus {fixed} special "
                          f"symbols): {MAKE_ONE}.")
    layout = layout.long()
    outside = ((layout < 0) | (layout >= vocab_size)).nonzero()
    if outside.numel():
        v = int(outside[0])
        raise LayoutError(f"{source} is not a permutation: id {v} has position {int(layout[v])}, outside "
                          f"0..{vocab_size - 1}; every position 0..{vocab_size - 1} must appear once.")
    counts = torch.bincount(layout, minlength=vocab_size)
    if (counts != 1).any():
        twice, missing = int((counts > 1).nonzero()[0]), int((counts == 0).nonzero()[0])
        raise LayoutError(f"{source} is not a permutation: position {twice} appears "
                          f"{int(counts[twice])} times and position {missing} not at all; every "
                          f"position 0..{vocab_size - 1} must appear once.")
    moved = first_moved(layout, fixed)
    if moved is not None:
        raise LayoutError(f"{source} moves special symbol id {moved} to position {int(layout[moved])}: the "
                          f"first {fixed} ids (<s>, <pad>, </s>, <unk>) must keep their positions; "
                          f"{MAKE_ONE}.")
    return layout


def read_layout(path: Union[str, Path], vocab_size: int, fixed: int) -> Tensor:
    """The checked layout in `path` (text, .npy or .pt; see the module docstring)."""
    path = Path(path)
    source = f"--mhce-layout {path}"
    if not path.is_file():
        raise LayoutError(f"{source} does not exist: give the layout file the model is to use; {MAKE_ONE}.")
    if path.suffix == ".npy":
        values = torch.from_numpy(np.load(path, allow_pickle=False))
    elif path.suffix == ".pt":
        values = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(values, Tensor):
            raise LayoutError(f"{source} holds a {type(values).__name__}, not a tensor: save the layout "
                              "with torch.save(tensor, path).")
    else:
        values = torch.tensor(read_text_positions(path, source), dtype=torch.long)
    return check_layout(values, vocab_size, fixed, source)


def read_text_positions(path: Path, source: str) -> List[int]:
    """The integers of a text layout, one per non-empty line."""
    positions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            positions.append(int(text))
        except ValueError:
            raise LayoutError(f"{source} line {number}: {text!r} is not an integer: a text layout holds one "
                              f"position per line, in id order; {MAKE_ONE}.") from None
    return positions


def write_layout(path: Union[str, Path], layout: Union[Tensor, np.ndarray]) -> None:
    """Write `layout` as a text layout file (one position per line, id order)."""
    values = np.asarray(layout, dtype=np.int64)
    Path(path).write_text("".join(f"{p}\n" for p in values.tolist()), encoding="utf-8")
