"""scripts/nll_breakdown.py: hand-checked parts, and a real checkpoint against fairseq-validate."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch

from scripts import nll_breakdown as nb
from toy import PLUGIN

pytestmark = pytest.mark.trains("mhe2_short")

PAD = 1


def test_parts_by_hand():
    """V = 7, shortlist 2, groups of 2: tail groups {2, 3}, {4, 5} and the partial {6}."""
    p = torch.tensor([0.1, 0.2, 0.05, 0.15, 0.3, 0.1, 0.1])
    lp = p.log().expand(1, 4, 7)
    target = torch.tensor([[0, 5, 6, PAD]])  # PAD (= id 1) positions are skipped
    sums = nb.breakdown_sums(lp, target, PAD, shortlist=2, group_size=2)
    assert sums["tokens"] == 3 and sums["tail_tokens"] == 2
    assert sums["shortlist"] == pytest.approx(-math.log(0.1))
    assert sums["gate"] == pytest.approx(-2 * math.log(0.7))
    assert sums["group"] == pytest.approx(-math.log(0.4 / 0.7) - math.log(0.1 / 0.7))
    assert sums["leaf"] == pytest.approx(-math.log(0.1 / 0.4))  # the partial group {6}: leaf cost 0
    stats = nb.finish(sums)
    assert stats["nll_bits"] == pytest.approx(-sum(math.log2(q) for q in (0.1, 0.1, 0.1)) / 3)
    assert stats["tail_share"] == pytest.approx(2 / 3)


def test_checkpoint_total_matches_fairseq_validate(trained, toy_bin, cli, tmp_path, capsys):
    """The parts of a trained shortlisted mhe model (the command line, with --json) add up to
    fairseq-validate's nll_loss."""
    ckpt = trained("mhe2_short")["ckpt"]
    out = tmp_path / "breakdown.json"
    nb.main([str(toy_bin), str(ckpt), "--shortlist", "10", "--group-size", "3", "--json", str(out)])
    [stats] = json.loads(out.read_text())
    assert stats["checkpoint"] == str(ckpt) and stats["shortlist"] == 10 and stats["group_size"] == 3
    assert f"{stats['nll_bits']:6.3f}" in capsys.readouterr().out
    proc = cli.run("fairseq_cli.validate", [toy_bin, "--user-dir", PLUGIN, "--task", "translation_mhce",
                                            "--path", ckpt, "--valid-subset", "valid", "--cpu",
                                            "--max-tokens", "1024"])
    nll = float(re.search(r"nll_loss ([0-9.]+)", proc.stdout + proc.stderr).group(1))
    assert stats["nll_bits"] == pytest.approx(nll, abs=2e-3)
    assert 0.0 < stats["tail_share"] < 1.0
    assert min(stats[f"{part}_bits"] for part in nb.PARTS) >= 0.0


def test_shortlist_covering_the_vocabulary_is_a_clear_error(trained, toy_bin):
    ckpt = trained("mhe2_short")["ckpt"]
    with pytest.raises(SystemExit, match="leaves no tail"):
        nb.checkpoint_breakdown(toy_bin, ckpt, "valid", 1024, shortlist=10_000, group_size=3)


def test_rejects_bad_options(tmp_path, capsys):
    with pytest.raises(SystemExit):
        nb.main([str(tmp_path), "x.pt", "--shortlist", "4", "--group-size", "0"])
    assert "--group-size, --max-tokens >= 1" in capsys.readouterr().err
