"""bench_output_layer's new options: shortlist methods build shortlist layers; bad values are refused."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench_output_layer as bench  # noqa: E402

from mhce_nmt.output import ShortlistOutput  # noqa: E402


@pytest.mark.parametrize("argv,message", [(["--shortlist", "2"], "--shortlist must be >= 4"),
                                          (["--smoothing-groups", "-1"], "--smoothing-groups >= 0"),
                                          (["--smoothing", "uniform"], "invalid choice")])
def test_bad_values_are_refused(capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_shortlist_methods_train_and_decode_a_shortlist_layer():
    args = bench.parse_args(["--quick", "--vocab-sizes", "300", "--shortlist", "16", "--dim", "8",
                             "--methods", "mhe+shortlist", "mhp+shortlist"])
    for method in ("mhe+shortlist", "mhp+shortlist"):
        b = bench.Bench(method, 300, args, torch.device("cpu"), torch.float32)
        assert isinstance(b.layer, ShortlistOutput) and b.layer.codec.shortlist == 16
        b.train_step()
        assert b.x.grad is not None and torch.isfinite(b.x.grad).all()
        assert b.decode_step().shape == (args.hyps, 2 * args.beam)
