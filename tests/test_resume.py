"""Stopping and resuming fairseq-train changes nothing, bit for bit, for MHP, MHE and MHS (and for
MHE with --optimizer adam_fused, whose state is torch's, not fairseq's).

For each mode: 8 updates in one run, versus 4 updates, stop, then the same command with
--max-update 8 in the same --save-dir (fairseq resumes from checkpoint_last.pt). The tiny model
trains with dropout 0.1 and MHS samples groups, so this also checks that every random draw
depends only on (--seed, update number): fairseq reseeds torch before each update
(utils.set_torch_seed(seed + num_updates) in Trainer.train_step) and restores the data
iterator's position from the checkpoint. 4 updates end mid-epoch (the toy epoch has 5 batches)
and the run goes on past the epoch boundary.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

from toy import train_args

MODES = {
    "mhp": ["--mhce-mode", "mhp"],
    "mhe": ["--mhce-mode", "mhe"],
    "mhs": ["--mhce-mode", "mhs", "--mhs-groups", "2"],
    "mhe_adam_fused": ["--mhce-mode", "mhe", "--optimizer", "adam_fused"],
}
TOTAL, STOP = 8, 4


def logged_updates(log: str) -> List[Tuple[int, str]]:
    """(num_updates, loss as printed) of every train_inner line (--log-interval 1)."""
    return [(int(n), loss) for loss, n in
            re.findall(r"train_inner \|.*? loss=([0-9.]+),.*? num_updates=(\d+)", log)]


@pytest.fixture(scope="module")
def runs(toy_bin, tmp_path_factory, cli) -> Dict[str, Dict[str, object]]:
    root = tmp_path_factory.mktemp("resume")

    def train(mode: str, run: str, updates: int):
        extra = [*MODES[mode], "--log-interval", "1"]
        proc = cli.run("fairseq_cli.train", train_args(toy_bin, root / mode / run, extra, updates=updates))
        return proc.stdout + proc.stderr

    def stop_and_resume(mode: str):
        return train(mode, "split", STOP), train(mode, "split", TOTAL)

    with ThreadPoolExecutor(2) as pool:
        split = {mode: pool.submit(stop_and_resume, mode) for mode in MODES}
        whole = {mode: pool.submit(train, mode, "whole", TOTAL) for mode in MODES}
        out = {}
        for mode in MODES:
            first, second = split[mode].result()
            out[mode] = {"whole": whole[mode].result(), "first": first, "second": second,
                         "dir": root / mode}
    return out


def load(path: Path) -> dict:
    return torch.load(path, weights_only=False)  # our own checkpoint (importing mhce_nmt: 5 s)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_resumed_training_is_bit_identical(runs, mode):
    run = runs[mode]
    whole = logged_updates(run["whole"])
    first, second = logged_updates(run["first"]), logged_updates(run["second"])
    assert [n for n, _ in whole] == list(range(1, TOTAL + 1)), run["whole"][-2000:]
    assert [n for n, _ in first] == list(range(1, STOP + 1))
    # the second command really resumed: it starts at update STOP + 1 from the checkpoint
    assert f"(epoch 1 @ {STOP} updates)" in run["second"], run["second"][-3000:]
    assert [n for n, _ in second] == list(range(STOP + 1, TOTAL + 1))
    # every logged loss, the final one included, is the same as printed
    assert first + second == whole

    a = load(run["dir"] / "whole" / "checkpoint_last.pt")
    b = load(run["dir"] / "split" / "checkpoint_last.pt")
    assert a["optimizer_history"][-1]["num_updates"] == b["optimizer_history"][-1]["num_updates"] == TOTAL
    assert a["model"].keys() == b["model"].keys()
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not different, f"parameters differ after resuming: {different}"
    # the optimizer state (Adam moments, step) too
    sa, sb = a["last_optimizer_state"]["state"], b["last_optimizer_state"]["state"]
    assert sa.keys() == sb.keys()
    for key in sa:
        for name, value in sa[key].items():
            other = sb[key][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, (key, name)
