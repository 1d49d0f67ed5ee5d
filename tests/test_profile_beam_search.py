"""scripts/profile_beam_search: a tiny beam search profiled on each path, and its refusals."""
from __future__ import annotations

import json

import pytest

from scripts import bench_scaling, profile_beam_search


@pytest.mark.parametrize("dense, search", [(False, "CandidateBeamSearch"), (True, "BeamSearch")])
def test_tiny_profile_takes_the_asked_path(tmp_path, capsys, monkeypatch, dense, search):
    monkeypatch.setattr(bench_scaling, "DECODE_LENGTH", 3)  # hypotheses of 3 tokens + eos: a quick search
    out = tmp_path / "profile.json"
    result = profile_beam_search.main(["--method", "mhe", "--vocab", "600", "--sentences", "2", "--threads", "1",
                                       "--out", str(out), *(["--dense-scores"] if dense else [])])
    assert result["search"] == search and result["wall_s"] > 0
    assert result["ops_ms"]["aten::topk"] > 0  # beam search's own top-k, on either path
    assert json.loads(out.read_text())["vocab"] == 600 and "commit" in result
    assert f"search {search}" in capsys.readouterr().out


@pytest.mark.parametrize("bad, message", [
    (["--method", "softmax", "--dense-scores"], "use it with --method mhe or mhp"),
    (["--sentences", "0"], "must be >= 1"),
])
def test_refuses(bad, message, capsys):
    with pytest.raises(SystemExit):
        profile_beam_search.main(bad)
    assert message in capsys.readouterr().err
