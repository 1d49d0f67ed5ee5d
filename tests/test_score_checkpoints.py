"""scripts/score_checkpoints.py: which checkpoint each spec names, and its one-line errors
(the decoding itself is bench_quality's decode_checkpoint, run by the benchmarks)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scripts import score_checkpoints as score


def test_a_plus_joined_spec_is_averaged_and_a_single_one_used_as_is(tmp_path: Path):
    for name, value in (("a.pt", 1.0), ("b.pt", 3.0)):
        torch.save({"model": {"w": torch.full((2,), value)}, "optimizer_history": [{"num_updates": 1}]},
                   tmp_path / name)
    assert score.checkpoint_for(str(tmp_path / "a.pt"), tmp_path / "out") == tmp_path / "a.pt"
    averaged = score.checkpoint_for(f"{tmp_path / 'a.pt'}+{tmp_path / 'b.pt'}", tmp_path / "out")
    assert averaged.parent == tmp_path / "out"
    assert torch.equal(torch.load(averaged, weights_only=False)["model"]["w"], torch.full((2,), 2.0))


def test_missing_checkpoint_or_corpus_is_one_line(tmp_path: Path):
    with pytest.raises(SystemExit, match="checkpoint not found: .*nope.pt"):
        score.checkpoint_for(str(tmp_path / "nope.pt"), tmp_path)
    with pytest.raises(SystemExit, match="bin-spm16000 not found: prepare the corpus first"):
        score.main(["--mode", "mhe", "--work-dir", str(tmp_path), str(tmp_path / "x.pt")])
