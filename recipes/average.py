"""Checkpoint averaging: one model whose parameters are the element-wise mean of several
checkpoints' (Vaswani et al. 2017; fairseq's scripts/average_checkpoints.py, which pip does not
install). Short runs end with a high learning rate, where the mean of the last few checkpoints
sits closer to the optimum than any one of them.

Only floating-point tensors are averaged. Integer buffers (the codec's digit counts, shortlist
ids) must be equal in every checkpoint and are copied. Everything else (config, optimizer
history) comes from the newest checkpoint, so fairseq loads the result like any checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

LAST = "checkpoint_last.pt"


def average_checkpoints(paths: Sequence[Path], out: Path) -> Path:
    """Write the mean of ``paths`` (oldest first; the newest supplies all but the parameters)."""
    import torch

    if not paths:
        raise ValueError("no checkpoints to average")
    states = [torch.load(path, map_location="cpu", weights_only=False) for path in paths]
    newest = states[-1]
    model = {}
    for name, tensor in newest["model"].items():
        values = [state["model"][name] for state in states]
        if tensor.is_floating_point():
            model[name] = torch.stack([v.double() for v in values]).mean(0).to(tensor.dtype)
        elif all(torch.equal(v, tensor) for v in values):
            model[name] = tensor
        else:
            raise ValueError(f"{name} differs between the checkpoints: they are not of one model")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**newest, "model": model}, out)
    return out


def newest_checkpoints(checkpoints: Path, count: int, last_update: int) -> list[Path]:
    """``checkpoint_last.pt`` (saved at update ``last_update``) and the newest interval checkpoints
    ``checkpoint_<epoch>_<update>.pt`` before it, ``count`` in all, oldest first."""
    interval = {}
    for path in checkpoints.glob("checkpoint_*_*.pt"):
        match = re.fullmatch(r"checkpoint_\d+_(\d+)\.pt", path.name)
        if match and int(match.group(1)) < last_update:
            interval[int(match.group(1))] = path
    older = [interval[u] for u in sorted(interval)][-(count - 1):] if count > 1 else []
    return [*older, checkpoints / LAST]
