"""--autocast-bf16: each training step runs under torch.autocast(bfloat16), refused beside
fairseq's own reduced precision, warned about on a CPU without native bf16, and a tiny model of
every kind trains with it end to end."""
import logging

import pytest
import torch
from fairseq.optim.fp16_optimizer import FP16Optimizer, MemoryEfficientFP16Optimizer

from mhce_nmt.training import autocast
from mhce_nmt.errors import MHCEConfigError

from toy import PLUGIN, run_stock_train, train_args, train_losses


def test_linear_layers_run_in_bf16_inside_and_fp32_outside():
    model = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast.training_autocast(model, object(), True):
        assert model(x).dtype == torch.bfloat16
    with autocast.training_autocast(model, object(), False):
        assert model(x).dtype == torch.float32
    assert model(x).dtype == torch.float32


def test_cpu_attention_runs_in_fp32_inside_autocast_unless_asked_for_bf16(monkeypatch):
    """fairseq's training attention (torch's multi_head_attention_forward) reaches
    scaled_dot_product_attention with fp32 inputs under the CPU training autocast, bf16 ones with
    bf16_attention; the values are the fp32 attention of the bf16-rounded projections, gradients
    flow, and the function is torch's own again after the block."""
    seen = []

    def recording(query, key, value, *args, **kwargs):
        seen.append(query.dtype)
        return original(query, key, value, *args, **kwargs)

    original = autocast._bf16_attention
    monkeypatch.setattr(autocast, "_bf16_attention", recording)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    torch.manual_seed(0)
    attention = torch.nn.MultiheadAttention(16, 2)
    x = torch.randn(5, 3, 16, requires_grad=True)
    for bf16_attention, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        seen.clear()
        with autocast.training_autocast(attention, object(), True, bf16_attention=bf16_attention):
            out, _ = attention(x, x, x, need_weights=False)
        assert seen == [dtype] and out.dtype == torch.bfloat16  # out_proj is a bf16 product either way
        out.float().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert torch.nn.functional.scaled_dot_product_attention is recording
    q, k, v = (torch.randn(2, 4, 8).to(torch.bfloat16) for _ in range(3))
    exact = torch.softmax(q.float() @ k.float().transpose(1, 2) / 8 ** 0.5, -1) @ v.float()
    with autocast.training_autocast(torch.nn.Linear(2, 2), object(), True):
        result = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert result.dtype == torch.float32 and torch.allclose(result, exact, atol=1e-5)


def test_fp32_attention_blocks_nest_and_restore_what_they_found(monkeypatch):
    """An inner block leaves the outer one's fp32 attention in place; the last exit restores the
    function found on entry (another library's patch included), not torch's original."""
    def someone_elses(*args, **kwargs):
        raise AssertionError("not called here")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", someone_elses)
    with autocast.attention_in_fp32():
        with autocast.attention_in_fp32():
            assert torch.nn.functional.scaled_dot_product_attention is autocast.fp32_attention
        assert torch.nn.functional.scaled_dot_product_attention is autocast.fp32_attention
    assert torch.nn.functional.scaled_dot_product_attention is someone_elses


def test_the_precision_probe_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    autocast.probe_cpu_precision.__wrapped__(16, model_dim=8, ffn_dim=16, heads=2, layers=1, tokens=32, repeats=1)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("wrapper", [FP16Optimizer, MemoryEfficientFP16Optimizer])
def test_fairseqs_reduced_precision_is_refused(wrapper):
    optimizer = object.__new__(wrapper)  # the type is what the check reads
    with pytest.raises(MHCEConfigError, match="cannot be combined with --fp16, --bf16 or --amp"):
        autocast.training_autocast(torch.nn.Linear(2, 2), optimizer, True)


class _Model(torch.nn.Linear):
    def set_num_updates(self, num_updates):
        pass


class _Optimizer:
    def backward(self, loss):
        loss.backward()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_task_step_runs_the_forward_under_autocast_even_inside_fairseqs_own(monkeypatch, enabled):
    """fairseq's train_step wraps the criterion in torch.cuda.amp.autocast(enabled=False); made a
    CPU autocast here, it would switch an outer autocast off. The forward must still be bf16."""
    from types import SimpleNamespace

    from mhce_nmt.adapters.task import TranslationMHCETask

    monkeypatch.setattr(torch.cuda.amp, "autocast", lambda enabled=True, **kw: torch.autocast("cpu", enabled=enabled))
    task = object.__new__(TranslationMHCETask)
    task.cfg = SimpleNamespace(autocast_bf16=enabled, autocast_bf16_attention=False, no_cpu_runtime_tuning=True)
    seen = []

    def criterion(model, sample):
        out = model(sample)
        seen.append(out.dtype)
        return out.float().sum(), 1, {}

    model = _Model(4, 3)
    task.train_step(torch.randn(2, 4), model, criterion, _Optimizer(), 0)
    assert seen == [torch.bfloat16 if enabled else torch.float32]
    assert model.weight.grad is not None and model.weight.grad.dtype == torch.float32


def test_cpu_flags_decide_native_bf16(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    assert not autocast.cpu_has_native_bf16(info)
    info.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert autocast.cpu_has_native_bf16(info)
    assert not autocast.cpu_has_native_bf16(tmp_path / "absent")


def test_cpu_without_native_bf16_is_warned_once(monkeypatch, caplog):
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(autocast, "_cpu_checked", False)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            autocast.training_autocast(torch.nn.Linear(2, 2), object(), True)
    assert sum("neither AVX512-BF16 nor AMX" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("extra", [
    ["--mhce-mode", "mhe"],  # the grouped products of every level
    ["--mhce-mode", "mhe", "--mhce-shortlist", "10"],  # the shortlist's head and the tail's grouped products
    ["--mhce-mode", "mhp"],
])
def test_tiny_models_train_under_autocast_close_to_fp32(toy_bin, tmp_path, cli, extra):
    """Same seed with and without autocast: the losses of 20 updates fall alike (bf16 rounding
    only), through the grouped products' autocast handling and their backward. (20 updates of
    1,000 tokens: on a CPU without AVX512-BF16 or AMX, bf16 is emulated and slow.)"""
    runs = {}
    short = ["--warmup-updates", "10", "--log-interval", "5", "--max-tokens", "1000"]
    for name, flag in (("fp32", []), ("bf16", ["--autocast-bf16"])):
        proc = cli.run("fairseq_cli.train", train_args(toy_bin, tmp_path / name, [*extra, *flag, *short], updates=20))
        runs[name] = train_losses(proc.stdout + proc.stderr)
    assert len(runs["bf16"]) == len(runs["fp32"]) == 4
    assert runs["bf16"][-1] < runs["bf16"][0] - 0.5  # it learns
    assert runs["bf16"] == pytest.approx(runs["fp32"], abs=0.15)


def test_stock_transformer_trains_under_autocast_with_the_plugin_task(toy_bin, tmp_path, cli):
    proc = run_stock_train([
        toy_bin, "--user-dir", PLUGIN, "--task", "translation_mhce", "--autocast-bf16", "--arch", "transformer",
        "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
        "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
        "--decoder-attention-heads", "2", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--optimizer", "adam", "--lr", "5e-3", "--max-tokens", "2000", "--max-update", "10", "--cpu",
        "--no-save", "--save-dir", tmp_path, "--log-format", "simple", "--log-interval", "5",
        "--num-workers", "0"], cli.run)
    assert len(train_losses(proc.stdout + proc.stderr)) == 2
