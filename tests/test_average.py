"""Checkpoint averaging (recipes/average.py): the element-wise mean, integer buffers kept, the
right checkpoints chosen, and a pipeline run that decodes the averaged model."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from recipes import config, pipeline, textfiles
from recipes.average import average_checkpoints, newest_checkpoints
from tiny_recipe import TINY_MODEL, write_data


def save(path: Path, weight: list[float], counts: list[int], updates: int) -> Path:
    torch.save({"cfg": {"tag": updates}, "model": {"w": torch.tensor(weight), "counts": torch.tensor(counts)},
                "optimizer_history": [{"num_updates": updates}]}, path)
    return path


def test_mean_of_floats_integers_copied_rest_from_the_newest(tmp_path: Path):
    paths = [save(tmp_path / "a.pt", [1.0, 2.0], [3, 4], 100), save(tmp_path / "b.pt", [2.0, 4.0], [3, 4], 200),
             save(tmp_path / "c.pt", [6.0, 0.0], [3, 4], 300)]
    out = average_checkpoints(paths, tmp_path / "avg" / "checkpoint_avg.pt")
    state = torch.load(out, weights_only=False)
    assert torch.allclose(state["model"]["w"], torch.tensor([3.0, 2.0]))
    assert state["model"]["counts"].tolist() == [3, 4] and state["model"]["counts"].dtype == torch.int64
    assert state["cfg"] == {"tag": 300} and state["optimizer_history"] == [{"num_updates": 300}]


def test_checkpoints_of_different_models_are_refused(tmp_path: Path):
    paths = [save(tmp_path / "a.pt", [1.0], [3], 1), save(tmp_path / "b.pt", [1.0], [5], 2)]
    with pytest.raises(ValueError, match="counts differs between the checkpoints"):
        average_checkpoints(paths, tmp_path / "avg.pt")
    with pytest.raises(ValueError, match="no checkpoints"):
        average_checkpoints([], tmp_path / "avg.pt")


def test_newest_checkpoints_are_last_and_the_interval_ones_before_it(tmp_path: Path):
    for name in ("checkpoint_1_200.pt", "checkpoint_2_400.pt", "checkpoint_3_600.pt", "checkpoint_3_650.pt",
                 "checkpoint_best.pt", "checkpoint_last.pt"):
        (tmp_path / name).write_bytes(b"")
    names = [p.name for p in newest_checkpoints(tmp_path, 3, last_update=700, interval=200)]
    assert names == ["checkpoint_2_400.pt", "checkpoint_3_600.pt", "checkpoint_last.pt"]
    # stopped at 650: checkpoint 650 is last itself, 600 nearly is (under half an interval before it)
    names = [p.name for p in newest_checkpoints(tmp_path, 3, last_update=650, interval=200)]
    assert names == ["checkpoint_1_200.pt", "checkpoint_2_400.pt", "checkpoint_last.pt"]
    assert [p.name for p in newest_checkpoints(tmp_path, 1, 650, 200)] == ["checkpoint_last.pt"]


def test_averaged_checkpoint_leaves_the_optimizer_state_out(tmp_path: Path):
    path = tmp_path / "a.pt"
    torch.save({"model": {"w": torch.ones(2)}, "last_optimizer_state": {"big": torch.ones(3)},
                "optimizer_history": [{"num_updates": 7}]}, path)
    state = torch.load(average_checkpoints([path, path], tmp_path / "avg.pt"), weights_only=False)
    assert "last_optimizer_state" not in state and torch.equal(state["model"]["w"], torch.ones(2))


@pytest.mark.e2e
def test_pipeline_decodes_the_mean_of_the_last_checkpoints(tmp_path: Path, capfd):
    work = tmp_path / "work"
    write_data(work)
    recipe = config.Recipe(name="tiny", src="de", tgt="en", work_dir=work, model_args=TINY_MODEL,
                             vocab_size=120, warmup_updates=5, max_tokens=2048)
    cfg = pipeline.main(recipe, ["--mode", "mhe", "--max-update", "6", "--workers", "1", "--log-format", "simple",
                                 "--average-last", "2", "--average-interval", "2"])
    out = capfd.readouterr().out
    assert "--save-interval-updates 2 --keep-interval-updates 2" in out
    train = json.loads((cfg.run_dir / "train.json").read_text())
    first, last = train["averaged"]  # checkpoint_<epoch>_4.pt (the epoch depends on the batching)
    assert re.fullmatch(r"checkpoint_\d+_4\.pt", first) and last == "checkpoint_last.pt"
    states = [torch.load(cfg.checkpoints / name, weights_only=False)["model"] for name in train["averaged"]]
    averaged = torch.load(cfg.checkpoints / "checkpoint_avg.pt", weights_only=False)["model"]
    for name, tensor in averaged.items():
        expected = (states[0][name] + states[1][name]) / 2 if tensor.is_floating_point() else states[1][name]
        assert torch.allclose(tensor, expected.to(tensor.dtype)), name
    assert "checkpoint_avg.pt" in out.split("Translate your own sentences")[1]
    assert "decoded checkpoint" in out and f"checkpoint_avg.pt (mean of {first}, checkpoint_last.pt)" in out
    assert len(textfiles.read_lines(cfg.run_dir / "gen" / "hyp.txt")) == 40
    with pytest.raises(SystemExit, match="--average-last must be >= 0"):
        pipeline.main(recipe, ["--average-last", "-1"])
    # decoding another checkpoint than training wrote is one clear line, not fairseq's traceback
    (cfg.run_dir / "gen" / "hyp.txt").unlink()
    (cfg.checkpoints / "checkpoint_avg.pt").rename(cfg.checkpoints / "moved.pt")
    with pytest.raises(SystemExit, match="checkpoint_avg.pt not found: run the train stage first"):
        pipeline.main(recipe, ["--mode", "mhe", "--average-last", "2", "--stage", "generate"])
