"""Property-based exactness of every output layer's log-probs over random codecs (hypothesis).

tests/test_codec.py draws random codecs for the codec itself and tests/test_output_layers.py
checks the layers against brute force on four fixed codecs; here hypothesis draws the codec
(V, number and sizes of heads, exact or wasteful), the state width, the MHE label-embedding
width, the temperature and the weights, and every layer must match the float64 brute-force
reference of layer_reference.py (built from the raw parameters, never from the layer's code).
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mhce_nmt.codec import LabelCodec
from mhce_nmt.output import factored_loss
from layer_builders import make
from layer_reference import dense_from_candidates, ref_log_probs


pytestmark = pytest.mark.usefixtures("one_thread")


@st.composite
def layers(draw):
    mode = draw(st.sampled_from(["mhp", "mhe", "mhs", "softmax"]))
    h = draw(st.integers(2 if mode == "mhe" else 1, 3))
    sizes = draw(st.lists(st.integers(2, 6), min_size=h, max_size=h))
    rest = math.prod(sizes[1:])
    v = draw(st.integers(max(2, rest + 1), math.prod(sizes)))  # first head usable; maybe waste
    d = draw(st.integers(2, 6))
    embed = draw(st.one_of(st.none(), st.integers(2, 5))) if mode == "mhe" else None
    temperature = draw(st.sampled_from([1.0, 0.6, 1.7]))
    seed = draw(st.integers(0, 10_000))
    return mode, LabelCodec(v, sizes), d, embed, temperature, seed


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_log_probs_exact_for_random_codecs(case):
    mode, codec, d, embed, temperature, seed = case
    v = codec.vocab_size
    m = make(mode, codec, d=d, embed_dim=embed, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, d, generator=g)
    y = torch.randint(0, v, (3,), generator=g)

    lp = m.log_probs(x, temperature)
    assert lp.shape == (3, v) and torch.isfinite(lp).all()
    torch.testing.assert_close(lp.double(), ref_log_probs(m, x, temperature), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(torch.logsumexp(lp.double(), -1), torch.zeros(3, dtype=torch.float64),
                               atol=1e-5, rtol=0)  # all mass on the V real ids

    # the training loss (no smoothing) is the exact joint nll
    nll = factored_loss(m.loss_terms(x, y), 0.0).nll
    plain = m.log_probs(x) if temperature != 1.0 else lp
    torch.testing.assert_close(nll, -plain.gather(1, y[:, None]).squeeze(1), atol=2e-5, rtol=1e-5)

    # scoring given ids, and decoding candidates: exact wherever they give a finite score
    ids = torch.randint(0, v, (3, 4), generator=g)
    torch.testing.assert_close(m.score(x, ids, temperature), lp.gather(1, ids), atol=2e-5, rtol=1e-5)
    full_ids, full_scores = m.candidates(x, None, temperature)
    torch.testing.assert_close(dense_from_candidates(full_ids, full_scores, v), lp.double(),
                               atol=2e-5, rtol=1e-5)
    if m.supports_coarse_to_fine and codec.num_heads > 1:
        keep = [int(torch.randint(1, p + 1, (), generator=g)) for p in codec.num_prefixes[:-1]]
        pruned = dense_from_candidates(*m.candidates(x, keep, temperature), v)
        finite = torch.isfinite(pruned)
        assert finite.any(-1).all()  # every row keeps some real token
        torch.testing.assert_close(pruned[finite], lp.double()[finite], atol=2e-5, rtol=1e-5)
