"""Fused softmax baselines: fairseq's label-smoothed loss, whichever kernel computes it.

Reference: fairseq's own label_smoothed_nll_loss on log_softmax of the full logits, padding
masked as fairseq's criterion does (ignore_index). Every kernel that runs on this machine must
give the same loss and the same gradients; liger and cce need CUDA and their packages, so here
they must be refused with one line.
"""
import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

from mhce_nmt.errors import MHCEConfigError
from mhce_nmt.baselines.fused_softmax import check_kernel, linear_smoothed_cross_entropy, torch_smoothing

from toy import PLUGIN, run_stock_train, train_losses

pytestmark = pytest.mark.usefixtures("one_thread")

PAD = 1


def problem(vocab=50, n=40, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    weight = torch.randn(vocab, d, generator=g, dtype=torch.float64)
    target = torch.randint(0, vocab, (n,), generator=g)
    target[::7] = PAD
    return x, weight, target


def fairseq_reference(x, weight, target, eps):
    lprobs = torch.log_softmax(x @ weight.t(), dim=-1)
    return label_smoothed_nll_loss(lprobs, target.unsqueeze(-1), eps, ignore_index=PAD, reduce=True)


@pytest.mark.parametrize("kernel", ["eager", "torch"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_loss_and_gradients_equal_fairseqs_label_smoothed_nll_loss(kernel, eps):
    x, weight, target = problem()
    leaves = [x.clone().requires_grad_(), weight.clone().requires_grad_()]
    loss, nll = linear_smoothed_cross_entropy(leaves[0], leaves[1], target, eps, PAD, kernel)
    grads = torch.autograd.grad(loss, leaves)
    ref_leaves = [x.clone().requires_grad_(), weight.clone().requires_grad_()]
    ref_loss, ref_nll = fairseq_reference(*ref_leaves, target, eps)
    ref_grads = torch.autograd.grad(ref_loss, ref_leaves)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(nll.double(), ref_nll, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_torch_kernel_never_builds_the_logits(monkeypatch):
    """The torch kernel takes the chunked op (options given, no smoothing), never the reference path."""
    import torch.nn.functional as F

    calls = []
    real = F.linear_cross_entropy
    monkeypatch.setattr(F, "linear_cross_entropy", lambda *a, **k: calls.append(k) or real(*a, **k))
    x, weight, target = problem()
    linear_smoothed_cross_entropy(x.float(), weight.float(), target, 0.1, PAD, "torch")
    assert calls and calls[0]["options"] is not None and calls[0].get("label_smoothing", 0.0) == 0.0


@pytest.mark.slow
def test_compiled_kernel_equals_fairseq():
    """torch.compile of the eager loss (inductor: a C++ kernel on CPU, Triton on CUDA)."""
    x, weight, target = (t.float() if t.is_floating_point() else t for t in problem(vocab=30, n=16))
    loss, nll = linear_smoothed_cross_entropy(x, weight, target, 0.1, PAD, "compile")
    ref_loss, ref_nll = fairseq_reference(x.double(), weight.double(), target, 0.1)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(nll.double(), ref_nll, rtol=1e-4, atol=1e-4)


def test_torch_smoothing_maps_fairseqs_epsilon():
    """scale * [(1-s) nll + (s/V) S] == (1-eps-eps/(V-1)) nll + eps/(V-1) S for any nll and S."""
    for vocab, eps in ((50, 0.1), (32000, 0.1), (7, 0.4)):
        s, scale = torch_smoothing(eps, vocab)
        eps_o = eps / (vocab - 1)
        for nll, total in ((1.0, 0.0), (0.0, 1.0), (2.5, 310.0)):
            ours = scale * ((1 - s) * nll + s / vocab * total)
            assert ours == pytest.approx((1 - eps - eps_o) * nll + eps_o * total, rel=1e-12, abs=1e-12)
    assert torch_smoothing(0.0, 100) == (0.0, 1.0)


@pytest.mark.parametrize("kernel,eps,message", [
    ("liger", 0.1, "liger"), ("cce", 0.0, "cce"), ("fast", 0.1, "unknown"),
])
def test_kernels_that_cannot_run_here_are_refused_in_one_line(kernel, eps, message):
    with pytest.raises(MHCEConfigError, match=message) as info:
        check_kernel(kernel, torch.device("cpu"), eps)
    assert "\n" not in str(info.value)


def test_cce_refuses_label_smoothing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "cut_cross_entropy"
                        else real(name, *a))
    with pytest.raises(MHCEConfigError, match="no label smoothing"):
        check_kernel("cce", torch.device("cuda"), 0.1)
    check_kernel("cce", torch.device("cuda"), 0.0)  # package present, CUDA, eps 0: accepted


def stock_train_args(data, save_dir, criterion_args):
    return [data, "--user-dir", PLUGIN, "--task", "translation", "--arch", "transformer",
            "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16",
            "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
            "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
            "--share-decoder-input-output-embed", "--label-smoothing", "0.1", *criterion_args,
            "--optimizer", "adam", "--lr", "5e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
            "--max-tokens", "2000", "--max-update", "20", "--cpu", "--seed", "1", "--save-dir", save_dir,
            "--no-save", "--disable-validation", "--log-format", "simple", "--log-interval", "5",
            "--num-workers", "0"]


def test_fused_criterion_trains_like_label_smoothed_cross_entropy(toy_bin, tmp_path, cli):
    """Same seed, same data: the training losses of fairseq's criterion and the fused one agree."""
    stock = run_stock_train(stock_train_args(toy_bin, tmp_path / "a", ["--criterion", "label_smoothed_cross_entropy"]),
                            cli.run)
    fused = run_stock_train(stock_train_args(
        toy_bin, tmp_path / "b", ["--criterion", "fused_label_smoothed_cross_entropy", "--fused-kernel", "torch"]),
        cli.run)
    want, got = train_losses(stock.stdout + stock.stderr), train_losses(fused.stdout + fused.stderr)
    assert len(got) == len(want) == 4
    assert got == pytest.approx(want, abs=2e-3)


def test_fused_criterion_refuses_a_factored_model(toy_bin, tmp_path, cli):
    proc = cli.run("fairseq_cli.train", [
        toy_bin, "--user-dir", PLUGIN, "--task", "translation_mhce", "--arch", "transformer_mhce_tiny",
        "--criterion", "fused_label_smoothed_cross_entropy", "--optimizer", "adam", "--lr", "1e-3",
        "--max-tokens", "2000", "--max-update", "1", "--cpu", "--no-save", "--save-dir", tmp_path,
        "--num-workers", "0"], check=False)
    assert proc.returncode != 0
    assert "needs a decoder whose output is one Linear(d, V) without bias" in proc.stderr
    assert "Traceback" not in proc.stderr


