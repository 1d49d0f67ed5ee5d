"""Checkpoint averaging: one model whose parameters are the element-wise mean of several
checkpoints' (Vaswani et al. 2017; fairseq's scripts/average_checkpoints.py, which pip does not
install). Short runs end with a high learning rate, where the mean of the last few checkpoints
sits closer to the optimum than any one of them.

Only floating-point tensors are averaged. Integer buffers (the codec's digit counts, shortlist
ids) must be equal in every checkpoint and are copied. Everything else (config, optimizer
history) comes from the newest checkpoint, so fairseq loads the result like any checkpoint for
decoding; the optimizer's state is left out (the average is not a point to resume training from).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

LAST = "checkpoint_last.pt"


def average_checkpoints(paths: Sequence[Path], out: Path) -> Path:
    """Write the mean of ``paths`` (oldest first; the newest supplies all but the parameters).
    One checkpoint is in memory at a time, beside the running sum."""
    import torch

    if not paths:
        raise ValueError("no checkpoints to average")
    sums: dict = {}
    newest: dict = {}
    for path in paths:
        newest = torch.load(path, map_location="cpu", weights_only=False)
        for name, tensor in newest["model"].items():
            if name not in sums:
                sums[name] = tensor.double().clone() if tensor.is_floating_point() else tensor
            elif tensor.is_floating_point():
                sums[name] += tensor.double()
            elif not torch.equal(sums[name], tensor):
                raise ValueError(f"{name} differs between the checkpoints: they are not of one model")
    model = {name: (sums[name] / len(paths)).to(tensor.dtype) if tensor.is_floating_point() else tensor
             for name, tensor in newest["model"].items()}
    state = {key: value for key, value in newest.items() if key != "last_optimizer_state"}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**state, "model": model}, out)
    return out


def saved_update(checkpoint: Path) -> int:
    """The update count fairseq recorded in a checkpoint."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return int(state["optimizer_history"][-1]["num_updates"])


def newest_checkpoints(checkpoints: Path, count: int, last_update: int, interval: int) -> list[Path]:
    """``checkpoint_last.pt`` (saved at update ``last_update``) and the newest interval checkpoints
    ``checkpoint_<epoch>_<update>.pt`` at least half an ``interval`` before it, ``count`` in all
    (fewer if fewer exist), oldest first. (A time limit can stop training just past an interval
    checkpoint, which would then count twice.)"""
    interval_checkpoints = {}
    for path in checkpoints.glob("checkpoint_*_*.pt"):
        match = re.fullmatch(r"checkpoint_\d+_(\d+)\.pt", path.name)
        if match and int(match.group(1)) <= last_update - interval / 2:
            interval_checkpoints[int(match.group(1))] = path
    older = [interval_checkpoints[u] for u in sorted(interval_checkpoints)][-(count - 1):] if count > 1 else []
    return [*older, checkpoints / LAST]
