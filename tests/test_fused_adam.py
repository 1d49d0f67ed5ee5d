"""``--optimizer adam_fused`` takes the steps of fairseq's own ``adam`` (the reference: fairseq's
optimizer class, not a restated formula), in process and through fairseq-train, and refuses bad
options in one line."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import pytest
import torch

from toy import train_args, train_losses


def trajectory(optimizer_name: str, weight_decay: float, steps: int = 25,
               resumed_as: Optional[str] = None) -> List[torch.Tensor]:
    """Parameters of a small MLP after `steps` optimizer steps on fixed data, the optimizer taken
    from fairseq's registry by name; with `resumed_as`, the second half of the steps is taken by that
    optimizer, loaded with the first one's state_dict (a checkpoint resumed by the other)."""
    import mhce_nmt  # noqa: F401  (registers adam_fused)
    from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY, OPTIMIZER_REGISTRY

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 5))
    x, y = torch.randn(64, 12), torch.randint(0, 5, (64,))
    # eps is the one place the two differ (added before or after the bias correction): at 1e-8 it
    # moves weights with near-zero gradients by up to 2e-5 in 25 steps here, at 1e-12 by rounding only
    settings = {"adam_betas": "(0.9,0.98)", "adam_eps": 1e-12, "weight_decay": weight_decay, "lr": [1e-2]}

    def build(name: str):
        extra = {"tpu": False} if name == "adam" else {}
        return OPTIMIZER_REGISTRY[name](OPTIMIZER_DATACLASS_REGISTRY[name](**settings, **extra),
                                        list(model.parameters()))

    optimizer = build(optimizer_name)
    for step in range(steps):
        if resumed_as and step == steps // 2:
            state = optimizer.state_dict()
            optimizer = build(resumed_as)
            optimizer.load_state_dict(state)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_its_steps_are_fairseqs_adam(weight_decay: float) -> None:
    fused, reference = trajectory("adam_fused", weight_decay), trajectory("adam", weight_decay)
    start = trajectory("adam", weight_decay, steps=0)
    for p, q, p0 in zip(fused, reference, start):
        assert not torch.equal(q, p0)  # the run moved the weights
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first, then", [("adam", "adam_fused"), ("adam_fused", "adam")])
def test_either_resumes_the_others_state(first: str, then: str) -> None:
    """What fairseq lets through under --fp16/--amp (it records only the wrapper's class): either
    optimizer loads the other's state and goes on as an unbroken run of fairseq's adam would, and
    adam_fused stays on torch's fused kernel."""
    resumed, reference = trajectory(first, 0.05, resumed_as=then), trajectory("adam", 0.05)
    for p, q in zip(resumed, reference):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_loaded_fairseq_adam_state_keeps_the_fused_kernel() -> None:
    import mhce_nmt  # noqa: F401  (registers adam_fused)
    from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY, OPTIMIZER_REGISTRY

    params = [torch.nn.Parameter(torch.randn(4))]
    settings = {"adam_betas": "(0.9,0.98)", "adam_eps": 1e-8, "weight_decay": 0.0, "lr": [1e-3]}
    saved = OPTIMIZER_REGISTRY["adam"](OPTIMIZER_DATACLASS_REGISTRY["adam"](**settings, tpu=False), params)
    params[0].grad = torch.ones(4)
    saved.step()
    fused = OPTIMIZER_REGISTRY["adam_fused"](OPTIMIZER_DATACLASS_REGISTRY["adam_fused"](**settings), params)
    fused.load_state_dict(saved.state_dict())
    assert "fused" not in saved.state_dict()["param_groups"][0]
    assert fused.optimizer.param_groups[0]["fused"] is True
    fused.step()  # the fused kernel accepts the loaded state (its step count made a tensor)
    assert float(fused.optimizer.state[params[0]]["step"]) == 2


def test_bad_betas_are_one_clear_error() -> None:
    from mhce_nmt.errors import MHCEConfigError
    from mhce_nmt.training.optimizer import parse_betas

    assert parse_betas("(0.9, 0.98)") == (0.9, 0.98)
    for text in ("0.9", "(0.9,1.5)", "(a,b)"):
        with pytest.raises(MHCEConfigError, match="give two numbers in"):
            parse_betas(text)


def test_fairseq_train_with_it_follows_adam(cli, toy_bin: Path, tmp_path: Path) -> None:
    """The same toy run with either optimizer logs the same losses (as printed, 3 decimals, within
    0.0015) and ends at the same weights, with the options given."""
    extra = ["--mhce-mode", "mhe", "--adam-betas", "(0.9,0.98)", "--weight-decay", "0.01", "--log-interval", "1",
             "--dropout", "0.1"]
    logs, weights, states = {}, {}, {}
    for name in ("adam", "adam_fused"):
        proc = cli.run("fairseq_cli.train", train_args(toy_bin, tmp_path / name, [*extra, "--optimizer", name],
                                                       updates=12))
        logs[name] = train_losses(proc.stdout + proc.stderr)
        assert re.search(r"optimizer.*'_name': '%s'" % name, proc.stdout + proc.stderr)
        checkpoint = torch.load(tmp_path / name / "checkpoint_last.pt", weights_only=False)
        weights[name], states[name] = checkpoint["model"], checkpoint["last_optimizer_state"]
    assert len(logs["adam"]) == 12 and logs["adam"][0] > logs["adam"][-1] + 0.5  # it trained
    assert logs["adam_fused"] == pytest.approx(logs["adam"], abs=1.5e-3)
    # weights with a true gradient of 0 (attention key biases: softmax ignores a shift) step on float
    # noise, where eps's placement decides; up to 3e-4 apart here, of at most 0.013 moved in 12 steps
    for key, value in weights["adam"].items():
        torch.testing.assert_close(weights["adam_fused"][key], value, rtol=0, atol=2e-3)
    group = states["adam_fused"]["param_groups"][0]
    assert (tuple(group["betas"]), group["eps"], group["weight_decay"], group["fused"]) == ((0.9, 0.98), 1e-8, 0.01, True)


def test_weights_other_than_fp32_are_one_clear_error() -> None:
    import mhce_nmt  # noqa: F401
    from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY, OPTIMIZER_REGISTRY
    from mhce_nmt.errors import MHCEConfigError

    cfg = OPTIMIZER_DATACLASS_REGISTRY["adam_fused"](lr=[1e-3])
    with pytest.raises(MHCEConfigError, match="steps fp32 weights"):
        OPTIMIZER_REGISTRY["adam_fused"](cfg, [torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))])
