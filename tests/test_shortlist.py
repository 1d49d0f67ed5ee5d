"""The frequent-token shortlist (ShortlistOutput) against brute force over all V ids.

References are built from the parameters in float64: for MHE the one level-1 softmax over the
shortlist logits and the tail's valid groups, then the tail's levels (brute-force valid sets);
for MHP the gate [shortlist ; logsumexp(head 1)] times the brute-force head product of the tail.
Losses are checked against fairseq's own label_smoothed_nll_loss on those log-probs.
"""
import pytest
import torch
from torch import nn
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

from mhce_nmt.codec import CodecError, ShortlistCodec
from mhce_nmt.errors import MHCEConfigError
from mhce_nmt.output import ShortlistOutput, build_output_layer, factored_loss
from layer_builders import D, inputs, make_shortlist
from layer_reference import linear64, ref_loss, ref_short_logits, ref_shortlist, smoothed, valid_prefix_sets
from sampled_draws import losses_over_all_draws

pytestmark = pytest.mark.usefixtures("one_thread")

# mode "mhe-tied": mhe whose output rows are a (V, e) decoder embedding W (shortlist and leaves);
# "-tieshort": only the shortlist's rows are W[:N_s] (a (V, d) decoder embedding), the tail untied
CASES = [("mhe", "h2_waste", 4), ("mhe", "h3_waste", 1), ("mhe", "h2_exact", 7),
         ("mhp", "h2_waste", 4), ("mhp", "h3_waste", 3), ("mhp", "h3_exact", 5),
         ("mhe-tied", "h2_waste", 4), ("mhe-tied", "h3_waste", 2),
         ("mhe-tieshort", "h2_waste", 4), ("mhp-tieshort", "h3_waste", 3)]


def every_id(v, n):
    return (torch.arange(n) * 3) % v


@pytest.mark.parametrize("mode,cname,shortlist", CASES)
@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_log_probs_match_brute_force(mode, cname, shortlist, temperature):
    m = make_shortlist(mode, cname, shortlist).eval()
    v = m.codec.vocab_size
    x, _ = inputs(6, v)
    lp = m.log_probs(x, temperature)
    assert lp.shape == (6, v) and torch.isfinite(lp).all()
    torch.testing.assert_close(lp.double(), ref_shortlist(m, x, temperature), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lp.double().exp().sum(-1), torch.ones(6, dtype=torch.float64), atol=1e-5, rtol=0)
    ids = torch.randint(0, v, (6, 9), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(m.score(x, ids, temperature), lp.gather(1, ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode,cname,shortlist", CASES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_joint_loss_equals_fairseq_on_exact_log_probs(mode, cname, shortlist, eps):
    m = make_shortlist(mode, cname, shortlist)
    v = m.codec.vocab_size
    x, _ = inputs(40, v, seed=2)
    y = every_id(v, 40)
    x1 = x.clone().requires_grad_(True)
    res = factored_loss(m.loss_terms(x1, y, sum_groups=0), eps, "joint")
    lprobs = ref_shortlist(m, x)
    want, want_nll = label_smoothed_nll_loss(lprobs, y.unsqueeze(-1), eps, ignore_index=None, reduce=False)
    torch.testing.assert_close(res.nll.double(), want_nll.view(-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.loss.double(), want.view(-1), atol=1e-5, rtol=1e-5)
    # gradients against autograd through fairseq's loss on the implementation's full log-probs
    got = torch.autograd.grad(res.loss.sum(), [x1] + list(m.parameters()))
    x2 = x.clone().requires_grad_(True)
    ref = label_smoothed_nll_loss(m.log_probs(x2), y.unsqueeze(-1), eps, ignore_index=None, reduce=True)[0]
    for g, r in zip(got, torch.autograd.grad(ref, [x2] + list(m.parameters()))):
        torch.testing.assert_close(g, r, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("mode,cname,shortlist", [("mhe", "h3_waste", 2), ("mhp", "h2_waste", 4),
                                               ("mhe-tied", "h2_waste", 3)])
def test_per_level_loss_matches_reference(mode, cname, shortlist):
    """per-level: fairseq's formula in the gate (N_s + 1 classes), then in each tail level for
    tail tokens only."""
    m = make_shortlist(mode, cname, shortlist)
    v, n_short = m.codec.vocab_size, m.codec.shortlist
    x, _ = inputs(30, v, seed=4)
    y = every_id(v, 30)
    res = factored_loss(m.loss_terms(x, y), 0.1, "per-level")
    a = ref_short_logits(m, x.double())
    if mode.startswith("mhe"):
        groups = sorted(valid_prefix_sets(m.tail.codec.vocab_size, m.tail.codec.head_sizes)[1])
        b = linear64(x.double(), m.tail.level1)[:, groups]
    else:
        b = linear64(x.double(), m.tail.heads)[:, :m.tail.codec.head_sizes[0]]
    gate = torch.log_softmax(torch.cat([a, torch.logsumexp(b, -1, keepdim=True)], 1), -1)
    leaf_table = None if hasattr(m, "short") else m.tail.embeddings[-1].double()[n_short:]
    tail_loss = ref_loss(m.tail, x, (y - n_short).clamp(min=0), 0.1, leaf_table)
    want = [smoothed(gate[i], int(t) if t < n_short else n_short, 0.1) + (0 if t < n_short else tail_loss[i])
            for i, t in enumerate(y.tolist())]
    torch.testing.assert_close(res.loss.double(), torch.stack(want), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode,cname,shortlist,draws", [("mhe", "h2_waste", 3, 2), ("mhe", "h3_waste", 2, 1),
                                                     ("mhe-tied", "h2_waste", 3, 2)])
def test_mhe_sampled_uniform_term_is_unbiased(monkeypatch, mode, cname, shortlist, draws):
    m = make_shortlist(mode, cname, shortlist)
    v = m.codec.vocab_size
    x, _ = inputs(20, v, seed=6)
    y = every_id(v, 20)
    losses = losses_over_all_draws(monkeypatch, m, m.tail, x, y, draws, 0.2)
    want = label_smoothed_nll_loss(ref_shortlist(m, x), y.unsqueeze(-1), 0.2, ignore_index=None, reduce=False)[0]
    torch.testing.assert_close(losses.mean(0), want.view(-1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode,cname,shortlist", CASES)
def test_candidates(mode, cname, shortlist):
    """All groups kept: every id once with its exact score. Pruned: every shortlisted id is still
    a candidate, and every candidate's score is exact."""
    m = make_shortlist(mode, cname, shortlist).eval()
    v, n_short = m.codec.vocab_size, m.codec.shortlist
    x, _ = inputs(5, v, seed=8)
    lp = m.log_probs(x)
    ids, scores = m.candidates(x, None)
    for row in range(5):
        finite = torch.isfinite(scores[row])
        assert sorted(ids[row][finite].tolist()) == list(range(v))
    torch.testing.assert_close(scores[torch.isfinite(scores)], lp.gather(1, ids)[torch.isfinite(scores)])
    ids, scores = m.candidates(x, [1])
    finite = torch.isfinite(scores)
    assert (ids[:, :n_short] == torch.arange(n_short)).all() and finite[:, :n_short].all()
    torch.testing.assert_close(scores[finite], lp.gather(1, ids)[finite])
    assert finite.sum(1).max() < v  # the tail really was pruned


def test_shortlist_options_are_checked():
    with pytest.raises(CodecError, match="--mhce-shortlist 30 is out of range"):
        ShortlistCodec.build(31, 30)
    with pytest.raises(CodecError, match="--mhce-shortlist 0 is out of range"):
        ShortlistCodec.build(31, 0)
    codec = ShortlistCodec.build(100, 10, None, 2)
    assert codec.tail.vocab_size == 90 and codec.spec() == [100, 10, *codec.tail.head_sizes]
    assert codec == ShortlistCodec.build(100, 10, None, 2) and codec != ShortlistCodec.build(100, 11, None, 2)
    with pytest.raises(MHCEConfigError, match="applies to --mhce-mode mhp and mhe"):
        build_output_layer("mhs", codec, D)
    assert isinstance(build_output_layer("mhe", codec, D), ShortlistOutput)
    with pytest.raises(MHCEConfigError, match="--mhe-tie-label-embeddings needs --mhce-mode mhe"):
        build_output_layer("mhp", codec, D, tied_weight=nn.Parameter(torch.randn(100, D)))
    with pytest.raises(MHCEConfigError, match=r"shape \(100, 6\)"):
        build_output_layer("mhe", codec, D, tied_weight=nn.Parameter(torch.randn(90, D)))


def test_tied_shortlist_rows_are_the_decoder_embeddings():
    """Every id's gradient reaches W[id]: the shortlist's rows through the gate, a tail id's
    through its group; rows of tail groups no target touched get none."""
    m = make_shortlist("mhe-tied", "h2_waste", 4)
    w = m.tail.embeddings[-1]
    assert not hasattr(m, "short") and sum(p is w for p in m.parameters()) == 1
    v, n_short = m.codec.vocab_size, m.codec.shortlist
    x, _ = inputs(6, v, seed=3)
    y = torch.tensor([0, 1, n_short, n_short + 1, 2, 3])  # tail ids 0 and 1: group 0 of the tail
    factored_loss(m.loss_terms(x, y), 0.1, "per-level").loss.sum().backward()
    got = w.grad.abs().sum(-1) > 0
    k2 = m.tail.codec.head_sizes[1]
    assert got[:n_short].all() and got[n_short:n_short + k2].all() and not got[n_short + k2:].any()


@pytest.mark.parametrize("embed_dim", [None, 4])
def test_tied_rows_meet_the_features_directly_when_dims_match(embed_dim):
    """Tied with e = d every score is <x, W[v]> (+ bias), as in fairseq's tied softmax; with
    e != d the features are projected first. Both stay exact against brute force."""
    m = make_shortlist("mhe-tied", "h2_waste", 4, embed_dim=embed_dim).eval()
    assert isinstance(m.tail.projections[-1], nn.Linear if embed_dim else nn.Identity)
    x, _ = inputs(6, m.codec.vocab_size, seed=5)
    torch.testing.assert_close(m.log_probs(x).double(), ref_shortlist(m, x), atol=1e-5, rtol=1e-5)
    if embed_dim is None:  # no projection: the shortlist's scores are x . W[s] + c_s
        w = m.tail.embeddings[-1].double()[:m.codec.shortlist]
        torch.testing.assert_close(m.short_logits(x).double(), x.double() @ w.t() + m.short_bias.double())


@pytest.mark.parametrize("mode", ["mhe-tieshort", "mhp-tieshort"])
def test_shortlist_tied_rows_are_the_decoder_embeddings_and_the_tail_keeps_its_own(mode):
    """Only rows < N_s of W get gradient (through the gate); the tail's own parameters get theirs."""
    m = make_shortlist(mode, "h2_waste", 4)
    w = m.short_weight
    n_short = m.codec.shortlist
    x, _ = inputs(6, m.codec.vocab_size, seed=3)
    y = torch.tensor([0, 1, n_short, n_short + 1, 2, 3])
    factored_loss(m.loss_terms(x, y), 0.1, "per-level").loss.sum().backward()
    got = w.grad.abs().sum(-1) > 0
    assert got[:n_short].all() and not got[n_short:].any()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.tail.parameters())


def test_shortlist_tie_options_are_checked():
    codec = ShortlistCodec.build(100, 10, None, 2)
    with pytest.raises(MHCEConfigError, match=r"--mhce-tie-shortlist needs decoder input embeddings of width 6"):
        build_output_layer("mhe", codec, D, short_weight=nn.Parameter(torch.randn(100, D + 1)))
    with pytest.raises(MHCEConfigError, match="the latter already ties the shortlist's rows"):
        w = nn.Parameter(torch.randn(100, D))
        build_output_layer("mhe", codec, D, tied_weight=w, short_weight=w)
    with pytest.raises(MHCEConfigError, match="give --mhce-shortlist N > 0"):
        build_output_layer("mhe", ShortlistCodec.build(100, 10, None, 2).tail, D,
                           short_weight=nn.Parameter(torch.randn(90, D)))
