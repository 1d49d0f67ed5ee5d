"""fairseq's own data-parallel training with the plugin, on CPU: gloo on the loopback address.

Two fairseq-train processes (--distributed-world-size 2 --distributed-rank 0/1
--distributed-init-method tcp://127.0.0.1:PORT --distributed-no-spawn --distributed-backend gloo
--cpu; fairseq's spawn launcher counts CUDA devices, so each rank is its own command) with
--max-tokens T each, against one process with --update-freq 2 and the same T: fairseq gives rank
r the batches r, r+2, ... of the epoch, and --update-freq 2 accumulates the same two batches per
update, so both see the same data per update. Dropout is off (each rank reseeds identically,
so it would draw other masks than the single process). The default --ddp-backend pytorch_ddp
with find_unused_parameters=False fails at the second update if any parameter got no gradient,
so 4 clean updates also show that the factored layers (MHE's sparse label embeddings included)
use every parameter; test_every_parameter_gets_a_gradient checks that directly for all modes.
"""
from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import pytest
import torch

from toy import train_args

UPDATES = 4
MODES = {"mhe": ["--mhce-mode", "mhe"], "mhp": ["--mhce-mode", "mhp"]}
# exact joint smoothing (no sampled groups): the two set-ups draw different random numbers
COMMON = ["--dropout", "0", "--log-interval", "1", "--max-tokens", "1500", "--mhce-smoothing-groups", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(log: str) -> List[float]:
    return [float(v) for v in re.findall(r"train_inner \|.*? loss=([0-9.]+)", log)]


@pytest.fixture(scope="module")
def runs(toy_bin, tmp_path_factory, cli) -> Dict[str, Dict[str, object]]:
    root = tmp_path_factory.mktemp("distributed")

    def args(mode, name, extra):
        # train_args' --max-tokens 3000 comes first: the later 1500 wins
        return train_args(toy_bin, root / mode / name, [*MODES[mode], *COMMON, *extra], updates=UPDATES)

    def rank(mode, r, port):
        return cli.run("fairseq_cli.train", args(mode, "two", [
            "--distributed-world-size", "2", "--distributed-rank", str(r),
            "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
            "--distributed-backend", "gloo"]), check=False, timeout=300)

    out = {}
    with ThreadPoolExecutor(3) as pool:
        for mode in MODES:
            port = free_port()
            ranks = [pool.submit(rank, mode, r, port) for r in range(2)]
            single = pool.submit(cli.run, "fairseq_cli.train", args(mode, "one", ["--update-freq", "2"]))
            out[mode] = {"ranks": [f.result() for f in ranks], "single": single.result(),
                         "dir": root / mode}
    return out


@pytest.mark.parametrize("mode", sorted(MODES))
def test_two_processes_match_update_freq_two(runs, mode):
    run = runs[mode]
    for proc in run["ranks"]:
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "unused parameters" not in proc.stderr and "finished reduction" not in proc.stderr
    master = run["ranks"][0].stdout + run["ranks"][0].stderr
    assert "'distributed_world_size': 2" in master and "'ddp_backend': 'pytorch_ddp'" in master
    assert "training on 2 devices" in master
    two, one = losses(master), losses(run["single"].stdout)
    assert len(two) == len(one) == UPDATES, (two, one)
    assert two == pytest.approx(one, abs=2e-3)  # logged with 3 decimals

    two_ckpt, one_ckpt = (torch.load(run["dir"] / name / "checkpoint_last.pt", weights_only=False)
                          for name in ("two", "one"))
    for ckpt in (two_ckpt, one_ckpt):
        assert ckpt["optimizer_history"][-1]["num_updates"] == UPDATES
    a, b = two_ckpt["model"], one_ckpt["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("extra", [
    ["--mhce-mode", "mhp"], ["--mhce-mode", "mhe"], ["--mhce-mode", "mhe", "--mhce-heads", "4,4,4"],
    ["--mhce-mode", "mhe", "--mhe-tie-label-embeddings"], ["--mhce-mode", "mhe", "--mhce-embed-dim", "16"],
    ["--mhce-mode", "mhs", "--mhs-groups", "2"],
    ["--mhce-mode", "mhs", "--mhs-groups", "2", "--share-decoder-input-output-embed"],
], ids=lambda e: "_".join(a.lstrip("-") for a in e[1:]))
def test_every_parameter_gets_a_gradient(toy_bin, extra):
    """What DDP's find_unused_parameters=False needs: one training step touches every parameter."""
    from toy import build_in_process

    torch.manual_seed(0)
    _, model, criterion, sample = build_in_process(toy_bin, extra)
    model.train()
    loss, _, _ = criterion(model, sample)
    loss.backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused
