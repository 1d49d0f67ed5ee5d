"""Ground-truth tests for the factored output layers (MHP, MHE, MHS, softmax) and factored_loss.

Every expected value comes from a brute-force reference built directly from the module's
parameters in float64 (explicit enumeration of all V ids, explicit per-token / per-level loops,
brute-force validity sets), never from the implementation's own code paths.
"""
import copy
import itertools
import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from reference import mixed_radix_digits
from mhce_nmt.codec import LabelCodec
from mhce_nmt.output import (
    MHEOutput, MHPOutput, MHSOutput, SoftmaxOutput, build_output_layer, factored_loss,
)
from mhce_nmt.output.base import LevelScores, LossTerms
from layer_builders import D, codec_of, inputs, make
from layer_reference import (
    dense_from_candidates, ref_log_probs, ref_loss, ref_mhe_levels, ref_mhp, ref_softmax, smoothed, strides,
    valid_prefix_sets,
)



pytestmark = pytest.mark.usefixtures("one_thread")

CASCADE_CASES = [  # (mode, codec name, embed_dim or None)
    ("mhp", "h2_waste", None), ("mhp", "h2_exact", None), ("mhp", "h3_waste", None),
    ("mhp", "h3_exact", None),
    ("mhe", "h2_waste", None), ("mhe", "h2_exact", None), ("mhe", "h3_waste", None),
    ("mhe", "h3_exact", None), ("mhe", "h2_waste", 5), ("mhe", "h3_waste", 5),
]


# ---------------------------------------------------------------------------------------------
# log_probs vs brute force
# ---------------------------------------------------------------------------------------------


LOG_PROB_CASES = [c + (1.0,) for c in CASCADE_CASES] + [
    ("softmax", "h2_waste", None, 1.0), ("mhs", "h2_waste", None, 1.0),
    ("mhp", "h3_waste", None, 1.7), ("mhe", "h3_waste", None, 1.7), ("mhe", "h2_waste", 5, 1.7),
    ("softmax", "h2_waste", None, 1.7)]


@pytest.mark.parametrize("mode,cname,e,temperature", LOG_PROB_CASES)
def test_log_probs_match_brute_force(mode, cname, e, temperature):
    codec = codec_of(cname)
    m = make(mode, codec, embed_dim=e).eval()
    x, _ = inputs(5, codec.vocab_size)
    lp = m.log_probs(x, temperature)
    assert lp.shape == (5, codec.vocab_size)
    ref = ref_log_probs(m, x, temperature)
    torch.testing.assert_close(lp.double(), ref, atol=1e-5, rtol=1e-5)
    # a proper distribution over exactly the V valid ids: no mass left on invalid codes
    torch.testing.assert_close(lp.double().exp().sum(-1), torch.ones(5, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    assert torch.isfinite(lp).all()
    # batched (B, T, d) input
    lp3 = m.log_probs(x.view(1, 5, D), temperature)
    assert lp3.shape == (1, 5, codec.vocab_size)
    torch.testing.assert_close(lp3.view(5, -1), lp)


@pytest.mark.parametrize("cname", ["h2_waste", "h3_waste"])
def test_mhp_unnormalised_mass_on_invalid_codes_is_removed(cname):
    """The raw head product puts mass on codes >= V; log Z < 0 removes it exactly."""
    codec = codec_of(cname)
    m = make("mhp", codec)
    x, y = inputs(4, codec.vocab_size)
    lps, log_z, _ = ref_mhp(m, x)
    # brute-force mass of the head product over *all* codes is 1, over valid codes < 1
    all_codes = itertools.product(*[range(k) for k in codec.head_sizes])
    total = torch.stack([sum(lps[h][:, d] for h, d in enumerate(c)) for c in all_codes], 1)
    torch.testing.assert_close(torch.logsumexp(total, 1), torch.zeros(4, dtype=torch.float64))
    assert (log_z < -1e-4).all()
    terms = m.loss_terms(x, y)
    torch.testing.assert_close(terms.log_normalizer.double(), log_z, atol=1e-5, rtol=1e-5)


def test_mhp_exact_codec_has_no_normaliser():
    codec = codec_of("h3_exact")
    m = make("mhp", codec)
    x, y = inputs(4, codec.vocab_size)
    assert m.loss_terms(x, y).log_normalizer is None


# ---------------------------------------------------------------------------------------------
# factored_loss: exact nll and label smoothing
# ---------------------------------------------------------------------------------------------


def all_modes_cases():
    return CASCADE_CASES + [("softmax", "h2_waste", None), ("softmax", "h3_exact", None),
                            ("mhs", "h2_waste", None), ("mhs", "h3_waste", None)]


@pytest.mark.parametrize("mode,cname,e", all_modes_cases())
def test_nll_equals_exact_joint_nll(mode, cname, e):
    codec = codec_of(cname)
    m = make(mode, codec, embed_dim=e).eval()  # MHS: eval mode = full softmax
    x, _ = inputs(40, codec.vocab_size)
    y = torch.arange(40) % codec.vocab_size  # every id, including the partial groups
    res = factored_loss(m.loss_terms(x, y), 0.0)
    lp = m.log_probs(x)
    want = -lp.gather(1, y.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(res.nll, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.loss, want, atol=1e-5, rtol=1e-5)  # eps = 0: loss == nll
    ref = -ref_log_probs(m, x).gather(1, y.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(res.nll.double(), ref, atol=1e-5, rtol=1e-5)
    assert res.nll.dtype == torch.float32 and res.nll.shape == (40,)
    # joint correctness: argmax of the exact distribution per token (greedy per level for the
    # cascades is checked per level below)
    assert res.joint_correct.shape == (40,) and len(res.level_correct) == len(m.loss_terms(x, y).levels)


@pytest.mark.parametrize("mode,cname,e", all_modes_cases())
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_matches_reference(mode, cname, e, eps):
    codec = codec_of(cname)
    m = make(mode, codec, embed_dim=e).eval()
    x, _ = inputs(40, codec.vocab_size, seed=3)
    y = (torch.arange(40) * 7) % codec.vocab_size
    res = factored_loss(m.loss_terms(x, y), eps, "per-level")
    torch.testing.assert_close(res.loss.double(), ref_loss(m, x, y, eps), atol=1e-5, rtol=1e-5)
    # the nll is unaffected by smoothing
    torch.testing.assert_close(res.nll.double(), ref_loss(m, x, y, 0.0), atol=1e-5, rtol=1e-5)


def test_label_smoothing_hand_computed_example():
    """Two levels, by hand: level 1 has 3 valid of 4 classes, level 2 all 2 valid, plus a normaliser."""
    eps = 0.2
    l1 = torch.tensor([[1.0, 2.0, 0.5, 9.0]])
    v1 = torch.tensor([True, True, True, False])
    l2 = torch.tensor([[0.3, -0.4]])
    terms = LossTerms(levels=[LevelScores(l1, torch.tensor([1]), v1),
                              LevelScores(l2, torch.tensor([0]), None)],
                      log_normalizer=torch.tensor([-0.25]))
    res = factored_loss(terms, eps, "per-level")

    z1 = math.log(math.exp(1.0) + math.exp(2.0) + math.exp(0.5))
    lp1 = [1.0 - z1, 2.0 - z1, 0.5 - z1]
    z2 = math.log(math.exp(0.3) + math.exp(-0.4))
    lp2 = [0.3 - z2, -0.4 - z2]
    e1 = eps / (3 - 1)
    e2 = eps / (2 - 1)
    want1 = (1 - eps - e1) * (-lp1[1]) + e1 * -(lp1[0] + lp1[1] + lp1[2])
    want2 = (1 - eps - e2) * (-lp2[0]) + e2 * -(lp2[0] + lp2[1])
    assert res.loss.item() == pytest.approx(want1 + want2 - 0.25, abs=1e-5)
    assert res.nll.item() == pytest.approx(-lp1[1] - lp2[0] - 0.25, abs=1e-5)
    # per-level argmax ignores the invalid column (9.0)
    assert res.level_correct[0].tolist() == [True] and res.level_correct[1].tolist() == [True]
    assert res.joint_correct.tolist() == [True]
    # eps = 0: plain NLL
    res0 = factored_loss(terms, 0.0)
    assert res0.loss.item() == pytest.approx(-lp1[1] - lp2[0] - 0.25, abs=1e-5)
    # a level with a single valid class contributes nothing, even smoothed
    one = LossTerms(levels=[LevelScores(torch.tensor([[0.7, 3.0]]), torch.tensor([0]),
                                        torch.tensor([[True, False]]))])
    assert factored_loss(one, 0.3, "per-level").loss.item() == pytest.approx(0.0, abs=1e-6)
    assert factored_loss(one, 0.0).nll.item() == pytest.approx(0.0, abs=1e-6)


def test_level_correct_matches_brute_force_argmax():
    codec = codec_of("h3_waste")
    m = make("mhe", codec)
    x, y = inputs(50, codec.vocab_size, seed=5)
    res = factored_loss(m.loss_terms(x, y), 0.1, "per-level")
    levels = ref_mhe_levels(m, x)
    s = strides(codec.head_sizes)
    for h in range(1, 4):
        want = []
        for n, t in enumerate(y.tolist()):
            ch, lp = levels[(h, t // s[h - 2] if h > 1 else 0)]
            want.append(ch[int(lp[n].argmax())] == t // s[h - 1])
        assert res.level_correct[h - 1].tolist() == want
    assert res.joint_correct.tolist() == [all(c) for c in zip(*[r.tolist() for r in res.level_correct])]


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------


def naive_mhe_loss(m, x, y, eps):
    """Per-token loop: gather each token's children rows from the tables, explicit matmul."""
    v, sizes = m.codec.vocab_size, m.codec.head_sizes
    s = strides(sizes)
    valid = valid_prefix_sets(v, sizes)
    total = 0.0
    for n in range(x.size(0)):
        t = int(y[n])
        xn = x[n]
        for h in range(1, len(sizes) + 1):
            k = sizes[h - 1]
            parent = t // s[h - 2] if h > 1 else 0
            rows = [parent * k + c for c in range(k) if parent * k + c in valid[h]]
            if h == 1:
                w = m.level1.weight[rows]
                b = m.level1.bias[rows]
                scores = w @ xn + b
            else:
                proj = m.projections[h - 2]
                z = xn if isinstance(proj, nn.Identity) else proj.weight @ xn + proj.bias
                w = m.embeddings[h - 2][rows]           # (n_valid, e) gathered rows
                b = m.biases[h - 2][rows]
                scores = w @ z + b
            lp = torch.log_softmax(scores, -1)
            total = total + smoothed(lp, rows.index(t // s[h - 1]), eps)
    return total


@pytest.mark.parametrize("cname,e,tied", [("h2_waste", None, False), ("h3_waste", None, False),
                                          ("h3_waste", 5, False), ("h3_exact", 4, True),
                                          ("h2_waste", 6, True)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_mhe_grouped_gradients_equal_naive_reference(cname, e, tied, eps):
    codec = codec_of(cname)
    kw = {}
    if tied:
        kw["tied_label_weight"] = nn.Parameter(torch.randn(codec.vocab_size, e or D) * 0.5)
    m = make("mhe", codec, embed_dim=e, **kw)
    x, _ = inputs(30, codec.vocab_size, seed=7)
    y = (torch.arange(30) * 5 + 3) % codec.vocab_size
    # several tokens share prefixes, some do not
    y[:6] = codec.vocab_size - 1
    x1 = x.clone().requires_grad_(True)
    loss = factored_loss(m.loss_terms(x1, y), eps, "per-level").loss.sum()
    grads = torch.autograd.grad(loss, [x1] + list(m.parameters()))

    x2 = x.clone().requires_grad_(True)
    ref = naive_mhe_loss(m, x2, y, eps)
    ref_grads = torch.autograd.grad(ref, [x2] + list(m.parameters()), allow_unused=True)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)
    names = ["x"] + [n for n, _ in m.named_parameters()]
    for name, g, r in zip(names, grads, ref_grads):
        r = torch.zeros_like(g) if r is None else r
        torch.testing.assert_close(g, r, atol=2e-5, rtol=1e-4, msg=lambda s: f"{name}: {s}")


@pytest.mark.parametrize("mode,cname", [("mhp", "h2_waste"), ("mhp", "h3_waste"), ("softmax", "h2_waste")])
def test_gradients_equal_brute_force_reference(mode, cname):
    codec = codec_of(cname)
    m = make(mode, codec)
    x, _ = inputs(20, codec.vocab_size, seed=11)
    y = (torch.arange(20) * 3) % codec.vocab_size
    x1 = x.clone().requires_grad_(True)
    loss = factored_loss(m.loss_terms(x1, y), 0.1, "per-level").loss.sum()
    grads = torch.autograd.grad(loss, [x1] + list(m.parameters()))
    x2 = x.clone().requires_grad_(True)
    ref = ref_loss(m, x2, y, 0.1).sum()
    ref_grads = torch.autograd.grad(ref, [x2] + list(m.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g.double(), r.double(), atol=2e-5, rtol=1e-4)


class _LossOf(nn.Module):
    def __init__(self, layer, target, eps):
        super().__init__()
        self.layer, self.target, self.eps = layer, target, eps

    def forward(self, x):
        return factored_loss(self.layer.loss_terms(x, self.target), self.eps, "per-level").loss


@pytest.mark.parametrize("mode,v,sizes,e", [("mhe", 11, [4, 3], None), ("mhe", 11, [2, 3, 2], 3),
                                            ("mhp", 11, [4, 3], None), ("mhp", 11, [2, 3, 2], None)])
def test_gradcheck_float64(mode, v, sizes, e):
    codec = LabelCodec(v, sizes)
    m = make(mode, codec, d=3, embed_dim=e).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, v - 1, v // 2, v - 1])
    wrapper = _LossOf(m, y, 0.1)
    names = [n for n, _ in wrapper.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in wrapper.parameters()]

    def f(x, *ps):
        return torch.func.functional_call(wrapper, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


# ---------------------------------------------------------------------------------------------
# candidates / score / resolve_topk
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,cname,e", CASCADE_CASES)
def test_candidates_full_equal_log_probs(mode, cname, e):
    codec = codec_of(cname)
    m = make(mode, codec, embed_dim=e).eval()
    x, _ = inputs(4, codec.vocab_size, seed=2)
    ids, scores = m.candidates(x, None)
    assert ids.shape == scores.shape and ids.size(0) == 4
    dense = dense_from_candidates(ids, scores, codec.vocab_size)
    ref = ref_log_probs(m, x)
    torch.testing.assert_close(dense, ref, atol=1e-5, rtol=1e-5)  # every valid id, exactly
    torch.testing.assert_close(dense, m.log_probs(x).double(), atol=1e-5, rtol=1e-5)
    # with a temperature
    ids_t, scores_t = m.candidates(x, None, temperature=0.7)
    torch.testing.assert_close(dense_from_candidates(ids_t, scores_t, codec.vocab_size),
                               ref_log_probs(m, x, 0.7), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["softmax", "mhs"])
def test_candidates_default_is_full_softmax(mode):
    codec = codec_of("h2_waste")
    m = make(mode, codec).eval()
    x, _ = inputs(3, codec.vocab_size)
    ids, scores = m.candidates(x, None)
    torch.testing.assert_close(dense_from_candidates(ids, scores, codec.vocab_size), ref_softmax(m, x),
                               atol=1e-5, rtol=1e-5)
    sel = torch.tensor([[0, 22, 5], [1, 1, 2], [22, 21, 0]])
    torch.testing.assert_close(m.score(x, sel).double(), ref_softmax(m, x).gather(1, sel),
                               atol=1e-5, rtol=1e-5)


def ref_prefix_scores(m, x, ref_joint):
    """prefix_score[h][p] (N,) = what coarse-to-fine ranks level-h prefixes by (brute force).

    MHE: the exact marginal log p(prefix) (logsumexp over the ids below it);
    MHP: the sum of the heads' log-probs along the prefix digits.
    """
    v, sizes = m.codec.vocab_size, m.codec.head_sizes
    s = strides(sizes)
    valid = valid_prefix_sets(v, sizes)
    out = {}
    if isinstance(m, MHPOutput):
        lps = ref_mhp(m, x)[0]
    for h in range(1, len(sizes)):
        out[h] = {}
        for p in sorted(valid[h]):
            if isinstance(m, MHEOutput):
                members = [i for i in range(v) if i // s[h - 1] == p]
                out[h][p] = torch.logsumexp(ref_joint[:, members], 1)
            else:
                d = mixed_radix_digits(p, sizes[:h])
                out[h][p] = sum(lps[j][:, d[j]] for j in range(h))
    return out


def ref_kept_ids(m, prefix_scores, row, keep):
    """Brute-force coarse-to-fine: top g_h valid prefixes whose parent was kept, level by level."""
    sizes = m.codec.head_sizes
    kept = {0}
    for h in range(1, len(sizes)):
        k = sizes[h - 1]
        cands = [p for p in prefix_scores[h] if p // k in kept]
        cands.sort(key=lambda p: -float(prefix_scores[h][p][row].detach()))
        kept = set(cands[: keep[h - 1]])
    s = strides(sizes)
    return kept, {i for i in range(m.codec.vocab_size) if i // s[-2] in kept}


TOPK_CASES = [
    ("mhe", (23, [5, 5]), [[1], [2], [4]]),
    ("mhp", (23, [5, 5]), [[1], [3]]),
    ("mhe", (37, [3, 4, 4]), [[1], [2], [1, 3], [2, 5], [3, 2], [1, 4]]),
    ("mhp", (37, [3, 4, 4]), [[1], [2, 5], [3, 2], [1, 4]]),
    ("mhe", (40, [2, 3, 3, 3]), [[1], [1, 3, 4], [2, 2, 2], [1, 3, 9], [2, 5, 6], [1, 2, 3]]),
    ("mhp", (40, [2, 3, 3, 3]), [[1, 3, 4], [2, 5, 6], [1, 2, 3]]),
]


@pytest.mark.parametrize("mode,spec,keeps", TOPK_CASES)
def test_candidates_topk_against_brute_force(mode, spec, keeps):
    codec = LabelCodec(*spec)
    levels = codec.num_heads - 1
    for seed in range(3):
        m = make(mode, codec, seed=seed).eval()
        x, _ = inputs(6, codec.vocab_size, seed=seed)
        ref = ref_log_probs(m, x)
        pscores = ref_prefix_scores(m, x, ref)
        for keep in keeps:
            full_keep = keep * levels if len(keep) == 1 else keep
            ids, scores = m.candidates(x, keep)
            # width: g_{H-1} (capped by what exists) times K_H
            w = 1
            for h in range(levels):
                w = min(full_keep[h], w * codec.head_sizes[h])
            assert ids.shape == (6, w * codec.head_sizes[-1])
            assert (ids >= 0).all() and (ids < codec.vocab_size).all()
            for r in range(6):
                finite = torch.isfinite(scores[r])
                assert not torch.isnan(scores[r]).any()
                got = ids[r][finite].tolist()
                assert len(got) == len(set(got))
                # every finite score is the exact log-prob of its id
                torch.testing.assert_close(scores[r][finite].double(), ref[r, ids[r][finite]],
                                           atol=1e-5, rtol=1e-5)
                # and the kept prefixes are the brute-force top-g at each level
                _, want_ids = ref_kept_ids(m, pscores, r, full_keep)
                assert set(got) == want_ids, (keep, r)


@pytest.mark.parametrize("mode,cname,e", CASCADE_CASES)
def test_candidates_level1_groups_are_top_g(mode, cname, e):
    codec = codec_of(cname)
    m = make(mode, codec, embed_dim=e, seed=4).eval()
    x, _ = inputs(8, codec.vocab_size, seed=4)
    ref = ref_log_probs(m, x)
    pscores = ref_prefix_scores(m, x, ref)
    g = 2
    keep = [g] + [codec.num_prefixes[h] for h in range(1, codec.num_heads - 1)]
    ids, scores = m.candidates(x, keep)
    for r in range(8):
        groups = {int(i) // codec.strides[0] for i, sc in zip(ids[r], scores[r]) if math.isfinite(sc)}
        order = sorted(pscores[1], key=lambda p: -float(pscores[1][p][r].detach()))
        assert groups == set(order[:g])


@pytest.mark.parametrize("mode,cname,e", CASCADE_CASES + [("softmax", "h3_waste", None)])
def test_score_equals_log_probs_gathered(mode, cname, e):
    codec = codec_of(cname)
    m = make(mode, codec, embed_dim=e).eval()
    x, _ = inputs(5, codec.vocab_size, seed=9)
    g = torch.Generator().manual_seed(9)
    ids = torch.randint(0, codec.vocab_size, (5, 17), generator=g)
    ids[:, 0] = codec.vocab_size - 1
    ids[:, 1] = 0
    ids[:, 2] = ids[:, 3]  # duplicates within a row
    ref = ref_log_probs(m, x).gather(1, ids)
    torch.testing.assert_close(m.score(x, ids).double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.score(x, ids, temperature=1.3).double(),
                               ref_log_probs(m, x, 1.3).gather(1, ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["mhe", "mhp"])
def test_resolve_topk_errors(mode):
    codec = codec_of("h3_waste")  # 2 coarse levels, P = [3, 10]
    m = make(mode, codec)
    assert m.resolve_topk(None) == [3, 10]
    assert m.resolve_topk([2]) == [2, 2]
    assert m.resolve_topk([1, 10]) == [1, 10]
    with pytest.raises(ValueError) as e:
        m.resolve_topk([1, 2, 3])
    msg = str(e.value)
    assert "3 values" in msg and "2 coarse levels" in msg and "--mhe-topk-groups" in msg
    for bad, level, limit in [([0], 1, 3), ([4, 2], 1, 3), ([2, 11], 2, 10), ([2, 0], 2, 10)]:
        with pytest.raises(ValueError) as e:
            m.resolve_topk(bad)
        msg = str(e.value)
        assert "out of range" in msg and f"level {level}" in msg and f"between 1 and {limit}" in msg
    x, _ = inputs(2, codec.vocab_size)
    with pytest.raises(ValueError, match="out of range"):
        m.candidates(x, [0])


# ---------------------------------------------------------------------------------------------
# the training path never materialises N x V
# ---------------------------------------------------------------------------------------------


class _SizeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.records = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.records.append((str(func), tuple(t.shape)))
        return out


@pytest.mark.parametrize("mode,spec,e", [("mhe", (200, [15, 14]), None), ("mhe", (300, [7, 7, 7]), None),
                                         ("mhe", (300, [7, 7, 7]), 5), ("mhp", (200, [15, 14]), None),
                                         ("mhp", (300, [7, 7, 7]), None)])
def test_training_path_never_materialises_n_by_v(mode, spec, e):
    codec = LabelCodec(*spec)
    m = make(mode, codec, embed_dim=e).train()
    n = 128
    x, y = inputs(n, codec.vocab_size)
    x.requires_grad_(True)
    terms = m.loss_terms(x, y)
    for h, level in enumerate(terms.levels):
        assert level.logits.shape == (n, codec.head_sizes[h])  # width K_h, never V
        assert level.target.shape == (n,)
        assert int(level.target.min()) >= 0 and int(level.target.max()) < codec.head_sizes[h]
    with _SizeRecorder() as rec:
        terms = m.loss_terms(x, y)
        factored_loss(terms, 0.1, "per-level").loss.sum().backward()
    assert rec.records, "dispatch recorder saw nothing"
    v = codec.vocab_size
    # nothing of N x V size (the biggest legitimate tensors: x (N, d), fused heads (N, sum K),
    # tables (P_h, e)), and no (N, >=V) shaped scores
    biggest = max(math.prod(s) for _, s in rec.records)
    assert biggest < n * v // 4, [r for r in rec.records if math.prod(r[1]) == biggest]
    assert not [r for r in rec.records if n in r[1] and any(k >= v and k != n for k in r[1])]
    # the level targets are the target's digits (brute force)
    for i in range(n):
        d = mixed_radix_digits(int(y[i]), codec.head_sizes)
        assert [int(level.target[i]) for level in terms.levels] == d


# ---------------------------------------------------------------------------------------------
# MHS
# ---------------------------------------------------------------------------------------------

MHS_CODEC = (58, [12, 5])  # 12 groups of 5; the last group has 3 real tokens (55, 56, 57)


def column_tokens(logits, x, weight, valid):
    """Recover which token each sampled column scores by matching against the full x W^T."""
    full = x @ weight.t()
    toks = []
    for j in range(logits.size(1)):
        if not bool(valid[j]):
            toks.append(None)
            continue
        match = [t for t in range(weight.size(0))
                 if torch.allclose(logits[:, j], full[:, t], atol=1e-5, rtol=1e-5)]
        assert len(match) == 1, (j, match)
        toks.append(match[0])
    return toks


@pytest.mark.parametrize("target_groups", [[2], [2, 11], [0, 5, 11], [1, 3, 7, 9, 11]])
def test_mhs_training_samples_groups(target_groups):
    codec = LabelCodec(*MHS_CODEC)
    v, s, p1 = codec.vocab_size, 5, 12
    m = make("mhs", codec, sampled_groups=4).train()
    x, _ = inputs(12, v, seed=1)
    y = torch.tensor([g * s + (i % (3 if g == 11 else 5)) for i, g in
                      enumerate(itertools.islice(itertools.cycle(target_groups), 12))])
    torch.manual_seed(0)
    terms = m.loss_terms(x, y)
    assert terms.sampled and len(terms.levels) == 1
    level = terms.levels[0]
    n_groups = max(4, len(target_groups))
    assert level.logits.shape == (12, n_groups * s)
    assert level.logits.size(1) < v
    valid = level.valid.expand_as(level.logits)[0]
    toks = column_tokens(level.logits.detach(), x, m.weight.detach(), valid)
    # columns come in whole groups of consecutive ids; invalid columns are exactly codes >= V
    groups = []
    for b in range(n_groups):
        block = toks[b * s:(b + 1) * s]
        g = next(t for t in block if t is not None) // s
        groups.append(g)
        for c, t in enumerate(block):
            if g * s + c < v:
                assert t == g * s + c
            else:
                assert t is None
    assert len(set(groups)) == n_groups
    assert set(target_groups) <= set(groups)
    # each target's column scores the target token
    for i in range(12):
        assert toks[int(level.target[i])] == int(y[i])
    res = factored_loss(terms, 0.0)
    assert torch.isfinite(res.loss).all()


def test_mhs_logq_correction():
    codec = LabelCodec(*MHS_CODEC)
    m = make("mhs", codec, sampled_groups=4).train()
    x, _ = inputs(6, codec.vocab_size, seed=2)
    y = torch.tensor([10, 11, 12, 56, 57, 13])  # groups 2 and 11 -> U = 2
    m.logq_correction = False
    torch.manual_seed(5)
    plain = m.loss_terms(x, y).levels[0]
    m.logq_correction = True
    torch.manual_seed(5)
    corrected = m.loss_terms(x, y).levels[0]
    assert torch.equal(plain.target, corrected.target)
    diff = corrected.logits - plain.logits
    q = (4 - 2) / (12 - 2)
    toks = column_tokens(plain.logits.detach(), x, m.weight.detach(),
                         plain.valid.expand_as(plain.logits)[0])
    for j, t in enumerate(toks):
        group = (t // 5) if t is not None else None
        if group in (2, 11):
            torch.testing.assert_close(diff[:, j], torch.zeros(6))
        elif t is not None:
            torch.testing.assert_close(diff[:, j], torch.full((6,), -math.log(q)))
    # no correction when nothing is drawn (targets fill the sample)
    y_all = torch.tensor([0, 5, 10, 15, 20, 25])  # 6 groups >= M
    torch.manual_seed(5)
    a = m.loss_terms(x, y_all).levels[0].logits
    m.logq_correction = False
    torch.manual_seed(5)
    b = m.loss_terms(x, y_all).levels[0].logits
    torch.testing.assert_close(a, b)


def _loss_and_grads(layer, x, y, eps):
    x = x.clone().requires_grad_(True)
    layer.zero_grad()
    out = factored_loss(layer.loss_terms(x, y), eps, "per-level")
    out.loss.sum().backward()
    return out.loss.detach(), out.nll.detach(), x.grad.clone(), layer.weight.grad.clone()


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_mhs_all_groups_equals_softmax(eps):
    codec = LabelCodec(*MHS_CODEC)
    mhs = make("mhs", codec, sampled_groups=12).train()
    soft = SoftmaxOutput(codec, D, weight=mhs.weight)
    assert soft.weight is mhs.weight
    x, y = inputs(20, codec.vocab_size, seed=4)
    a = _loss_and_grads(mhs, x, y, eps)
    b = _loss_and_grads(soft, x, y, eps)
    for u, w in zip(a, b):
        torch.testing.assert_close(u, w, atol=1e-6, rtol=1e-6)
    ref = ref_loss(soft, x, y, eps)
    torch.testing.assert_close(a[0].double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_mhs_sampled_path_covering_every_group_equals_softmax(eps):
    """M < P_1 but the targets span all groups: the sampled softmax is the full softmax."""
    codec = LabelCodec(*MHS_CODEC)
    mhs = make("mhs", codec, sampled_groups=3, logq_correction=True).train()
    soft = SoftmaxOutput(codec, D, weight=mhs.weight)
    x, _ = inputs(24, codec.vocab_size, seed=6)
    y = torch.tensor([(g * 5 + (g % 3)) for g in range(12)] + [57, 0, 33, 41, 8, 55, 19, 20, 9, 49, 50, 3])
    assert mhs.loss_terms(x, y).sampled
    a = _loss_and_grads(mhs, x, y, eps)
    b = _loss_and_grads(soft, x, y, eps)
    for u, w in zip(a, b):
        torch.testing.assert_close(u, w, atol=1e-5, rtol=1e-5)


def test_mhs_eval_is_exact_and_defaults():
    codec = LabelCodec(*MHS_CODEC)
    m = make("mhs", codec).eval()
    assert m.sampled_groups == math.ceil(12 / 8)
    x, y = inputs(7, codec.vocab_size)
    terms = m.loss_terms(x, y)
    assert not terms.sampled
    torch.testing.assert_close(factored_loss(terms, 0.0).nll.double(),
                               -ref_softmax(m, x).gather(1, y.unsqueeze(1)).squeeze(1),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 13, 100])
def test_mhs_groups_out_of_range(bad):
    codec = LabelCodec(*MHS_CODEC)
    with pytest.raises(ValueError) as e:
        MHSOutput(codec, D, bad)
    msg = str(e.value)
    assert f"--mhs-groups {bad}" in msg and "out of range" in msg and "between 1 and 12" in msg


# ---------------------------------------------------------------------------------------------
# tied weights, shape errors, build_output_layer
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cname,e", [("h2_waste", None), ("h3_waste", 4)])
def test_mhe_tied_label_embeddings(cname, e):
    codec = codec_of(cname)
    w = nn.Parameter(torch.randn(codec.vocab_size, e or D))
    m = MHEOutput(codec, D, embed_dim=e, tied_label_weight=w)
    assert m.embeddings[-1] is w
    assert any(p is w for p in m.parameters())
    # e = d: the identity (x . W[v], fairseq's tied softmax); e != d: Linear(d, e)
    assert isinstance(m.projections[-1], nn.Linear if e else nn.Identity)
    m2 = build_output_layer("mhe", codec, D, embed_dim=e, tied_weight=w)
    assert m2.embeddings[-1] is w
    x, y = inputs(5, codec.vocab_size)
    factored_loss(m.loss_terms(x, y), 0.1, "per-level").loss.sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    # rows of tokens that are not siblings of any target get no gradient
    s = codec.strides[-2]
    touched = {int(t) // s for t in y}
    for tok in range(codec.vocab_size):
        if tok // s not in touched:
            assert float(w.grad[tok].abs().sum()) == 0.0


def test_mhe_tied_wrong_shape():
    codec = codec_of("h2_waste")
    for shape in [(codec.vocab_size + 1, D), (codec.vocab_size, D + 1)]:
        with pytest.raises(ValueError) as e:
            MHEOutput(codec, D, tied_label_weight=nn.Parameter(torch.randn(*shape)))
        msg = str(e.value)
        assert str(shape) in msg and f"({codec.vocab_size}, {D})" in msg and "--mhce-embed-dim" in msg


def test_mhe_needs_two_heads():
    with pytest.raises(ValueError, match="at least 2 heads"):
        MHEOutput(LabelCodec(10, [10]), D)


@pytest.mark.parametrize("mode", ["softmax", "mhs"])
def test_shared_weight_shape_error(mode):
    codec = codec_of("h2_waste")
    with pytest.raises(ValueError, match="shared output weight has shape"):
        build_output_layer(mode, codec, D, tied_weight=nn.Parameter(torch.randn(codec.vocab_size, D + 2)))
    w = nn.Parameter(torch.randn(codec.vocab_size, D))
    assert build_output_layer(mode, codec, D, tied_weight=w).weight is w


def test_build_output_layer_modes_and_errors():
    codec = codec_of("h3_waste")
    assert isinstance(build_output_layer("mhp", codec, D), MHPOutput)
    assert isinstance(build_output_layer("mhe", codec, D), MHEOutput)
    assert isinstance(build_output_layer("mhs", codec, D, mhs_groups=2), MHSOutput)
    assert isinstance(build_output_layer("softmax", codec, D), SoftmaxOutput)
    with pytest.raises(ValueError, match="unknown"):
        build_output_layer("nope", codec, D)


@pytest.mark.parametrize("mode", ["mhp", "mhe", "mhs", "softmax"])
def test_wrong_input_width_is_clear(mode):
    codec = codec_of("h2_waste")
    m = make(mode, codec)
    x = torch.randn(3, D + 1)
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match=f"width {D}"):
        m.log_probs(x)
    if mode != "softmax":
        with pytest.raises(ValueError, match=f"width {D}"):
            m.train().loss_terms(x, y)


# ---------------------------------------------------------------------------------------------
# bf16
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,cname,e,kw", [
    ("mhp", "h3_waste", None, {}), ("mhe", "h3_waste", None, {}), ("mhe", "h2_waste", 4, {}),
    ("softmax", "h2_waste", None, {}), ("mhs", "h2_waste", None, {"sampled_groups": 2}),
    ("mhs", "h2_waste", None, {"sampled_groups": 2, "logq_correction": True}),
])
def test_bf16_close_to_fp32(mode, cname, e, kw):
    codec = codec_of(cname)
    m32 = make(mode, codec, embed_dim=e, **kw).train()
    with torch.no_grad():  # identical parameter values in both precisions
        for p in m32.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    m16 = copy.deepcopy(m32).to(torch.bfloat16)
    x, _ = inputs(24, codec.vocab_size, seed=8)
    x = x.to(torch.bfloat16)
    y = (torch.arange(24) * 5) % codec.vocab_size
    torch.manual_seed(1)
    r16 = factored_loss(m16.loss_terms(x, y), 0.1, "per-level")
    torch.manual_seed(1)
    r32 = factored_loss(m32.loss_terms(x.float(), y), 0.1, "per-level")
    for a, b in [(r16.loss, r32.loss), (r16.nll, r32.nll)]:
        assert a.dtype == torch.float32
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)
    # backward works in bf16 and gives finite grads
    x16 = x.clone().requires_grad_(True)
    torch.manual_seed(1)
    factored_loss(m16.loss_terms(x16, y), 0.1, "per-level").loss.sum().backward()
    assert torch.isfinite(x16.grad.float()).all()
    if mode in ("mhp", "mhe"):
        m16.eval()
        m32.eval()
        lp16 = m16.log_probs(x)
        assert lp16.dtype == torch.float32 and torch.isfinite(lp16).all()
        torch.testing.assert_close(lp16, m32.log_probs(x.float()), rtol=2e-2, atol=3e-2)
        ids, sc = m16.candidates(x, [1])
        assert not torch.isnan(sc).any()
