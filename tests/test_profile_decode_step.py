"""scripts/profile_decode_step.py: FLOP counting by hand, and a tiny run end to end."""
from __future__ import annotations

import pytest

from scripts import profile_decode_step as prof


@pytest.mark.parametrize("name, shapes, flops", [
    ("aten::mm", [[6, 512], [512, 181]], 2 * 6 * 512 * 181),
    ("aten::addmm", [[181], [6, 512], [512, 181], [], []], 2 * 6 * 512 * 181),
    ("aten::bmm", [[16, 18, 512], [16, 512, 181]], 2 * 16 * 18 * 512 * 181),
    ("aten::baddbmm", [[16, 1, 181], [16, 18, 512], [16, 512, 181], [], []], 2 * 16 * 18 * 512 * 181),
])
def test_matmul_flops(name, shapes, flops):
    assert prof.matmul_flops(shapes, name) == flops


@pytest.mark.parametrize("method", ["mhe", "mhp"])
def test_tiny_run_counts_the_level_products(method, capsys):
    """mhe: level 1 (hyps x d x K1) plus, at least, every kept prefix's children (no padding
    counted twice: padded rows only add); mhp: both heads' products, exactly."""
    hyps, dim, vocab, g = 12, 16, 400, 3
    out = prof.main(["--method", method, "--vocab", str(vocab), "--dim", str(dim), "--hyps", str(hyps),
                     "--topk-groups", str(g), "--repeats", "2", "--threads", "1"])
    k1, k2 = 20, 20  # LabelCodec.build(400, None, 2)
    level1 = 2 * hyps * dim * k1
    if method == "mhp":
        assert out["matmul_gflop"] * 1e9 == pytest.approx(level1 + 2 * hyps * dim * k2)
    else:
        assert out["matmul_gflop"] * 1e9 >= level1 + 2 * hyps * g * dim * k2
    assert out["wall_ms"] > 0 and out["dense_ms"] > 0 and out["ops_ms"] > 0
    assert "matrix products" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--repeats", "0"], ["--hyps", "0"], ["--topk-groups", "0"]])
def test_rejects_non_positive_sizes(bad, capsys):
    with pytest.raises(SystemExit):
        prof.main(bad)
    assert "must be >= 1" in capsys.readouterr().err
