"""Which optimizer resumes an interrupted run.

fairseq refuses to load an optimizer state that another optimizer class saved (an AssertionError
deep in its trainer). fairseq's ``adam`` and the plugin's ``adam_fused`` take the same update
(mhce_nmt/training/optimizer.py), so a run that one of them began resumes with that one: a run interrupted
before the recipe moved to ``adam_fused`` goes on with fairseq's ``adam`` instead of stopping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

#: --optimizer name -> the class name fairseq records in a checkpoint's optimizer_history
SAME_UPDATE = {"adam": "FairseqAdam", "adam_fused": "FusedAdam"}


def option_value(args: Sequence[str], option: str) -> str | None:
    """The last value given to ``option`` (fairseq keeps the last), or None."""
    values = [args[i + 1] for i, word in enumerate(args[:-1]) if word == option]
    return values[-1] if values else None


def saved_optimizer(checkpoint: Path) -> str | None:
    """The optimizer class whose state ``checkpoint`` holds (None where it holds none)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    history = state.get("optimizer_history") or []
    return history[-1].get("optimizer_name") if history else None


def resume_optimizer(checkpoint: Path, requested: str | None) -> str | None:
    """The --optimizer to resume ``checkpoint`` with where it differs from ``requested`` (both of
    the adam pair); None: resume with ``requested`` (no checkpoint, the same class, or a mismatch
    outside the pair, which fairseq itself reports)."""
    if requested not in SAME_UPDATE or not checkpoint.exists():
        return None
    saved = saved_optimizer(checkpoint)
    names = {cls: name for name, cls in SAME_UPDATE.items()}
    return names[saved] if saved in names and names[saved] != requested else None
