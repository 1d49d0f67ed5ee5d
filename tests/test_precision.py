"""bfloat16 on CPU: a transformer_mhce cast to bf16 trains and scores like fp32.

The model is built in-process exactly as fairseq-train builds it (toy.build_in_process). Its
parameters are first rounded to bf16 values, so fp32 and bf16 runs use the same weights and
differ only in arithmetic. Every head's log-softmax must run in fp32 (the logits may be bf16),
and what the criterion returns is fp32.

`fairseq-train --bf16 --cpu` itself is not possible with fairseq 0.12: `--bf16` implies `--tpu`
(fairseq/options.py), so the Trainer asks torch_xla for its device and fails without one;
test_fairseq_bf16_flag_means_tpu records that.
"""
from __future__ import annotations

import copy

import pytest
import torch

from toy import build_in_process

MODES = {
    "mhp": ["--mhce-mode", "mhp"],
    "mhe": ["--mhce-mode", "mhe"],
    "mhe3": ["--mhce-mode", "mhe", "--mhce-heads", "4,4,4"],
    "mhs": ["--mhce-mode", "mhs", "--mhs-groups", "2"],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def spy_log_softmax(monkeypatch):
    """Record (input dtype, output dtype) of every per-level log-softmax factored_loss takes."""
    import mhce_nmt.output.loss as loss_module

    calls = []
    real = loss_module.masked_log_softmax

    def spy(logits, valid, temperature=1.0):
        out = real(logits, valid, temperature)
        calls.append((logits.dtype, out.dtype))
        return out

    monkeypatch.setattr(loss_module, "masked_log_softmax", spy)
    return calls


def spy_loss_terms(monkeypatch, layer):
    """Record the LossTerms the layer hands to factored_loss."""
    seen = []
    real = layer.loss_terms

    def spy(x, target, sum_groups=None):
        terms = real(x, target, sum_groups)
        seen.append(terms)
        return terms

    monkeypatch.setattr(layer, "loss_terms", spy)
    return seen


@pytest.mark.parametrize("name", sorted(MODES))
def test_bf16_criterion_close_to_fp32_with_fp32_log_softmax(toy_bin, monkeypatch, name):
    _, m32, criterion, sample = build_in_process(toy_bin, [*MODES[name], "--dropout", "0"])
    with torch.no_grad():  # the same weights in both precisions
        for p in m32.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    m16 = copy.deepcopy(m32).to(torch.bfloat16)
    m32.train()
    m16.train()
    heads = m32.decoder.output_projection.codec.num_heads

    torch.manual_seed(3)  # MHS draws its groups, MHE its smoothing groups: the same draws in both runs
    loss32, size32, log32 = criterion(m32, sample)
    calls = spy_log_softmax(monkeypatch)
    terms = spy_loss_terms(monkeypatch, m16.decoder.output_projection)
    torch.manual_seed(3)
    loss16, size16, log16 = criterion(m16, sample)

    # every level's log-softmax: bf16 logits in, fp32 out
    levels = 1 if name == "mhs" else heads
    assert calls == [(torch.bfloat16, torch.float32)] * levels
    assert all(level.logits.dtype == torch.bfloat16 for level in terms[0].levels)
    if terms[0].log_normalizer is not None:  # MHP's log Z (7 x 7 = 49 codes for V = 48)
        assert terms[0].log_normalizer.dtype == torch.float32
    assert name != "mhp" or terms[0].log_normalizer is not None

    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    assert size16 == size32
    torch.testing.assert_close(loss16, loss32, rtol=3e-2, atol=0)
    nll = "sampled_nll_loss" if name == "mhs" else "nll_loss"  # MHS training: a sampled softmax
    torch.testing.assert_close(log16[nll].float(), log32[nll].float(), rtol=3e-2, atol=0)

    loss16.backward()
    for pname, p in m16.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.bfloat16, pname
        assert torch.isfinite(p.grad.float()).all(), pname


@pytest.mark.parametrize("name", sorted(MODES))
def test_bf16_normalized_probs_are_fp32_and_close(toy_bin, name):
    _, m32, _, sample = build_in_process(toy_bin, MODES[name])
    with torch.no_grad():
        for p in m32.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    m16 = copy.deepcopy(m32).to(torch.bfloat16)
    m32.eval()
    m16.eval()
    with torch.no_grad():
        lp32 = m32.get_normalized_probs(m32(**sample["net_input"]), log_probs=True)
        lp16 = m16.get_normalized_probs(m16(**sample["net_input"]), log_probs=True)
    assert lp16.dtype == torch.float32 and torch.isfinite(lp16).all()
    torch.testing.assert_close(lp16.exp().sum(-1), torch.ones(lp16.shape[:-1]), atol=1e-4, rtol=0)
    # per-token log-probs of the reference tokens (bf16 activations through 2+2 layers)
    gold32 = lp32.gather(-1, sample["target"].unsqueeze(-1))
    gold16 = lp16.gather(-1, sample["target"].unsqueeze(-1))
    torch.testing.assert_close(gold16.mean(), gold32.mean(), rtol=3e-2, atol=0)


def test_fairseq_bf16_flag_means_tpu(toy_bin):
    """Why there is no `fairseq-train --bf16 --cpu` test: fairseq turns --bf16 into --tpu."""
    import mhce_nmt  # noqa: F401
    from fairseq import options

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(toy_bin), "--task", "translation_mhce", "--arch", "transformer_mhce_tiny",
        "--criterion", "mhce_cross_entropy", "--cpu", "--bf16", "--max-tokens", "100"])
    assert args.bf16 and args.tpu
