"""bench_output_layer's new options: shortlist methods build shortlist layers; bad values are refused."""
from __future__ import annotations

import pytest
import torch

from mhce_nmt.output import ShortlistOutput
from scripts import bench_output_layer as bench


@pytest.mark.parametrize("argv,message", [(["--shortlist", "2"], "--shortlist must be >= 4"),
                                          (["--smoothing-groups", "-1"], "--smoothing-groups >= 0"),
                                          (["--smoothing", "uniform"], "invalid choice")])
def test_bad_values_are_refused(capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_shortlist_methods_train_and_decode_a_shortlist_layer():
    args = bench.parse_args(["--quick", "--vocab-sizes", "300", "--shortlist", "16", "--dim", "8",
                             "--methods", "mhe+shortlist", "mhp+shortlist", "mhe+shortlist+tied"])
    for method in ("mhe+shortlist", "mhp+shortlist", "mhe+shortlist+tied"):
        b = bench.Bench(method, 300, args, torch.device("cpu"), torch.float32)
        assert isinstance(b.layer, ShortlistOutput) and b.layer.codec.shortlist == 16
        assert b.layer.tied == method.endswith("+tied")
        b.train_step()
        assert b.x.grad is not None and torch.isfinite(b.x.grad).all()
        assert b.decode_step().shape == (args.hyps, 2 * args.beam)


@pytest.mark.slow
def test_fused_softmax_baseline_trains_the_same_loss_as_softmax():
    """softmax-torch: same weight, same states, same targets -> the same loss gradients as the eager
    softmax baseline (torch's fused kernel with fairseq's smoothing)."""
    args = bench.parse_args(["--quick", "--vocab-sizes", "300", "--dim", "8", "--methods", "softmax-torch"])
    eager = bench.Bench("softmax", 300, args, torch.device("cpu"), torch.float32)
    fused = bench.Bench("softmax-torch", 300, args, torch.device("cpu"), torch.float32)
    fused.layer.load_state_dict(eager.layer.state_dict())
    eager.train_step()
    fused.train_step()
    torch.testing.assert_close(fused.x.grad, eager.x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.layer.weight.grad, eager.layer.weight.grad, rtol=1e-4, atol=1e-5)


def test_fused_kernel_that_cannot_run_here_is_refused_before_timing(capsys):
    with pytest.raises(SystemExit, match="--methods softmax-liger: fused softmax kernel liger"):
        bench.main(["--quick", "--vocab-sizes", "300", "--dim", "8", "--methods", "softmax-liger", "--device", "cpu"])


def test_grouped_path_option_forces_mhes_way(monkeypatch):
    """--grouped-path gathered on CPU: MHE's products take the device way, and train the same."""
    from mhce_nmt.output import grouped

    seen = []
    real = grouped.gathered_child_scores
    monkeypatch.setattr(grouped, "gathered_child_scores", lambda *a: seen.append(1) or real(*a))
    args = bench.parse_args(["--quick", "--vocab-sizes", "300", "--dim", "8", "--methods", "mhe",
                             "--grouped-path", "gathered"])
    b = bench.Bench("mhe", 300, args, torch.device("cpu"), torch.float32)
    b.train_step()
    assert seen and b.x.grad is not None and torch.isfinite(b.x.grad).all()
