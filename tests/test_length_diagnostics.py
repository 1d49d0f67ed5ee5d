"""scripts/length_diagnostics.py: hand-checked sums, and a real checkpoint against fairseq-validate."""
from __future__ import annotations

import math
import re

import pytest
import torch

from scripts import length_diagnostics as diag
from toy import PLUGIN

pytestmark = pytest.mark.trains("mhe2")

EOS, PAD = 2, 1


def test_sums_by_hand():
    """Two sentences over V=4: [3, eos] and [3, 0, eos] padded to length 3."""
    probs = torch.tensor([[[0.1, 0.0, 0.2, 0.7], [0.1, 0.0, 0.6, 0.3], [0.25, 0.25, 0.25, 0.25]],
                          [[0.1, 0.0, 0.3, 0.6], [0.2, 0.0, 0.5, 0.3], [0.1, 0.0, 0.8, 0.1]]])
    target = torch.tensor([[3, EOS, PAD], [3, 0, EOS]])
    lp = probs.log()
    stats = diag.finish(diag.eos_sums(lp, target, EOS, PAD, beam=2), diag.eos_log_probs_inside(lp, target, EOS, PAD))
    assert stats["positions"] == 5 and stats["sentences"] == 2
    # inside positions: p(eos) 0.2 (only 0.7 above it: rank 1), 0.3 (0.6 above: rank 1), 0.5 (rank 0):
    # eos is among the 2 most likely ids at all three, and the most likely only at the last
    assert stats["eos_in_beam"] == pytest.approx(1.0)
    beam1 = diag.finish(diag.eos_sums(lp, target, EOS, PAD, beam=1), diag.eos_log_probs_inside(lp, target, EOS, PAD))
    assert beam1["eos_in_beam"] == pytest.approx(1 / 3)
    ordered = sorted(math.log10(p) for p in (0.2, 0.3, 0.5))
    assert stats["log10_p_eos_inside_q50"] == pytest.approx(ordered[1], abs=1e-3)
    assert stats["log10_p_eos_inside_q10"] == pytest.approx(ordered[0] + 0.2 * (ordered[1] - ordered[0]), abs=1e-3)
    assert stats["p_eos_inside"] == pytest.approx((0.2 + 0.3 + 0.5) / 3)
    assert stats["eos_beats_ref"] == pytest.approx(1 / 3)  # only at 0 (p 0.2) vs eos (p 0.5)
    assert stats["p_eos_final"] == pytest.approx((0.6 + 0.8) / 2)
    assert stats["ref_nll"] == pytest.approx(-sum(math.log(p) for p in (0.7, 0.6, 0.6, 0.2, 0.8)) / 5)


def test_checkpoint_matches_fairseq_validate(trained, toy_bin, cli):
    """ref_nll of a trained mhe model (full log-probs) = fairseq-validate's nll_loss (the
    criterion's factored path), in base 2."""
    ckpt = trained("mhe2")["ckpt"]
    stats = diag.checkpoint_statistics(toy_bin, ckpt, "valid", 1024)
    proc = cli.run("fairseq_cli.validate", [toy_bin, "--user-dir", PLUGIN, "--task", "translation_mhce",
                                            "--path", ckpt, "--valid-subset", "valid", "--cpu",
                                            "--max-tokens", "1024"])
    nll = float(re.search(r"nll_loss ([0-9.]+)", proc.stdout + proc.stderr).group(1))
    assert stats["ref_nll"] / math.log(2) == pytest.approx(nll, abs=2e-3)
    assert 0.0 <= stats["p_eos_inside"] <= 1.0 and 0.0 <= stats["eos_beats_ref"] <= 1.0
    assert stats["p_eos_final"] > stats["p_eos_inside"]  # it learnt where copies end


def test_missing_checkpoint_is_a_clear_error(toy_bin, tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint at"):
        diag.main([str(toy_bin), str(tmp_path / "nope.pt")])


def test_rejects_non_positive_max_tokens(tmp_path, capsys):
    with pytest.raises(SystemExit):
        diag.main([str(tmp_path), "x.pt", "--max-tokens", "0"])
    assert "--max-tokens and --beam must be >= 1" in capsys.readouterr().err
