"""Joint label smoothing against fairseq's own `label_smoothed_nll_loss` on the exact log-probs.

The reference is fairseq's function applied to each layer's exact (N, V) log-probabilities,
themselves checked against brute force in test_output_layers.py. MHP must match exactly; MHE
exactly with every group, and in expectation (all subsets enumerated) with sampled groups.
"""
import math

import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from torch import nn

from mhce_nmt.codec import LabelCodec
from reference import mixed_radix_digits
from mhce_nmt.errors import MHCEConfigError
from mhce_nmt.output import MHEOutput, factored_loss
from layer_builders import CODECS, D, codec_of, inputs, make
from sampled_draws import losses_over_all_draws

pytestmark = pytest.mark.usefixtures("one_thread")

JOINT_CASES = [  # (mode, codec name, embed_dim or None)
    ("mhp", "h2_waste", None), ("mhp", "h2_exact", None), ("mhp", "h3_waste", None),
    ("mhp", "h3_exact", None), ("mhe", "h2_waste", None), ("mhe", "h2_exact", None),
    ("mhe", "h3_waste", None), ("mhe", "h3_exact", None), ("mhe", "h3_waste", 5),
    ("softmax", "h2_waste", None), ("mhs", "h3_waste", None),
]


def fairseq_loss(layer, x, y, eps):
    """fairseq's label-smoothed loss over the layer's exact joint log-probs, per token (N,)."""
    lprobs = layer.log_probs(x).double()
    loss, nll = label_smoothed_nll_loss(lprobs, y.unsqueeze(-1), eps, ignore_index=None, reduce=False)
    return loss.view(-1), nll.view(-1)


def targets(v, n=40):
    """Every id, the partial last group included, several times over."""
    return (torch.arange(n) * 7) % v


@pytest.mark.parametrize("mode,cname,e", JOINT_CASES)
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_joint_smoothing_equals_fairseq_on_exact_log_probs(mode, cname, e, eps):
    codec = codec_of(cname)
    layer = make(mode, codec, embed_dim=e).eval()  # MHS: eval = the full softmax
    x, _ = inputs(40, codec.vocab_size, seed=3)
    y = targets(codec.vocab_size)
    res = factored_loss(layer.loss_terms(x, y, sum_groups=0), eps, "joint")
    want, want_nll = fairseq_loss(layer, x, y, eps)
    torch.testing.assert_close(res.loss.double(), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.nll.double(), want_nll, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode,cname,e,tied", [
    ("mhp", "h2_waste", None, False), ("mhp", "h3_waste", None, False),
    ("mhe", "h2_waste", None, False), ("mhe", "h3_waste", 5, False), ("mhe", "h3_exact", 4, True)])
def test_joint_smoothing_gradients_equal_fairseq(mode, cname, e, tied):
    """With every group scored, the gradient of every parameter and of x is fairseq's."""
    codec = codec_of(cname)
    kw = {"tied_label_weight": nn.Parameter(torch.randn(codec.vocab_size, e) * 0.5)} if tied else {}
    layer = make(mode, codec, embed_dim=e, **kw)
    x, _ = inputs(30, codec.vocab_size, seed=5)
    y = targets(codec.vocab_size, 30)
    params = [x.requires_grad_(True)] + list(layer.parameters())
    got = factored_loss(layer.loss_terms(x, y, sum_groups=0), 0.1, "joint").loss.sum()
    got_grads = torch.autograd.grad(got, params)
    want = fairseq_loss(layer, x, y, 0.1)[0].sum()
    want_grads = torch.autograd.grad(want, params)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g.double(), w.double(), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("cname,e,draws", [("h2_waste", None, 2), ("h2_waste", 4, 1),
                                           ("h3_waste", None, 1), ("h3_exact", None, 2)])
def test_mhe_sampled_uniform_term_is_unbiased(monkeypatch, cname, e, draws):
    """The mean of the sampled loss over every equally likely draw is fairseq's exact loss."""
    codec = codec_of(cname)
    layer = make("mhe", codec, embed_dim=e)
    x, _ = inputs(25, codec.vocab_size, seed=9)
    y = targets(codec.vocab_size, 25)
    stacked = losses_over_all_draws(monkeypatch, layer, layer, x, y, draws, 0.2)
    want, want_nll = fairseq_loss(layer, x, y, 0.2)
    torch.testing.assert_close(stacked.mean(0), want, atol=1e-5, rtol=1e-5)
    assert stacked.std(0).max() > 1e-4  # the draws really differ: a sampled estimate, not exact
    res = factored_loss(layer.loss_terms(x, y, sum_groups=draws), 0.2, "joint")
    torch.testing.assert_close(res.nll.double(), want_nll, atol=1e-5, rtol=1e-5)  # nll stays exact


def test_mhe_sample_parents_is_uniform_over_the_other_parents():
    codec = LabelCodec(300, [18, 17])
    layer = MHEOutput(codec, D)
    torch.manual_seed(0)
    total = codec.num_prefixes[0]  # 18
    parents = torch.tensor([0, 5, total - 1]).repeat_interleave(2000)
    drawn = layer.sample_parents(2, parents, 3)
    assert drawn.shape == (6000, 3) and drawn.dtype == torch.long
    assert (drawn != parents.unsqueeze(1)).all() and drawn.min() >= 0 and drawn.max() < total
    for own in (0, 5, total - 1):
        counts = torch.bincount(drawn[parents == own].reshape(-1), minlength=total).double()
        expected = 2000 * 3 / (total - 1)  # ~353 each of the 17 others
        others = torch.tensor([q for q in range(total) if q != own])
        assert counts[own] == 0 and ((counts[others] - expected).abs() < 5 * expected ** 0.5).all()


def test_per_level_smoothing_differs_from_joint_and_gives_siblings_more():
    """The old per-level smoothing is kept as an option, and it is not fairseq's joint target:
    the gold id gets (1-eps)^2 and each sibling ~eps/K2 instead of eps/(V-1)."""
    codec = codec_of("h2_waste")
    layer = make("mhe", codec)
    x, _ = inputs(20, codec.vocab_size, seed=1)
    y = targets(codec.vocab_size, 20)
    joint = factored_loss(layer.loss_terms(x, y, sum_groups=0), 0.1, "joint").loss
    per_level = factored_loss(layer.loss_terms(x, y), 0.1, "per-level").loss
    want = fairseq_loss(layer, x, y, 0.1)[0]
    torch.testing.assert_close(joint.double(), want, atol=1e-5, rtol=1e-5)
    assert (per_level.double() - want).abs().max() > 1e-2


def test_joint_smoothing_needs_the_layers_sum():
    codec = codec_of("h2_waste")
    layer = make("mhp", codec)
    x, y = inputs(4, codec.vocab_size)
    with pytest.raises(MHCEConfigError, match="sum_groups"):
        factored_loss(layer.loss_terms(x, y), 0.1, "joint")
    with pytest.raises(MHCEConfigError, match="per-level"):
        factored_loss(layer.loss_terms(x, y), 0.1, "uniform")
    # no smoothing: the sum is not needed
    assert torch.isfinite(factored_loss(layer.loss_terms(x, y), 0.0, "joint").loss).all()


@pytest.mark.parametrize("cname", list(CODECS))
def test_codec_counts_match_enumeration(cname):
    codec = codec_of(cname)
    v, sizes = CODECS[cname]
    ids = list(range(v))
    for head in range(1, len(sizes) + 1):
        digits = [mixed_radix_digits(i, sizes)[head - 1] for i in ids]
        assert codec.digit_counts(head).tolist() == [digits.count(c) for c in range(sizes[head - 1])]
        stride = math.prod(sizes[head:])
        prefixes = sorted({i // stride for i in ids})
        assert codec.subtree_sizes(head).tolist() == [sum(1 for i in ids if i // stride == p) for p in prefixes]
