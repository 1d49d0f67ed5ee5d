"""--mhce-shortlist and --mhce-smoothing through fairseq's own commands: options reach the model
and criterion, checkpoints carry the shortlist, bad values end in one clear line."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict

import pytest
import torch

from clear_errors import assert_one_clear_line
from fastcli import CLIServer
from toy import build_in_process, generate, hypotheses, train_args

# name -> (extra fairseq-train options, text the one error line must contain)
ERRORS = {
    "shortlist_without_specials": (["--mhce-shortlist", "3"], "--mhce-shortlist 3 leaves special symbols out"),
    "shortlist_too_large": (["--mhce-shortlist", "47"], "--mhce-shortlist 47 is out of range"),
    "shortlist_negative": (["--mhce-shortlist", "-2"], "--mhce-shortlist -2 must be >= 0"),
    "shortlist_with_mhs": (["--mhce-mode", "mhs", "--mhce-shortlist", "8"],
                           "--mhce-shortlist applies to --mhce-mode mhp and mhe, not mhs"),
    "tying_with_mhp": (["--mhce-mode", "mhp", "--mhe-tie-label-embeddings", "--mhce-shortlist", "8"],
                       "--mhe-tie-label-embeddings needs --mhce-mode mhe"),
    "tie_shortlist_with_tied_rows": (["--mhce-shortlist", "8", "--mhe-tie-label-embeddings", "--mhce-tie-shortlist"],
                                     "the latter already ties the shortlist's rows"),
    "unknown_smoothing": (["--mhce-smoothing", "uniform"],
                          "--mhce-smoothing 'uniform' is unknown: choose one of joint, per-level"),
    "negative_smoothing_groups": (["--mhce-smoothing-groups", "-1"], "--mhce-smoothing-groups -1 must be >= 0"),
}


def run_everything(cli: CLIServer, toy_bin: Path, root: Path) -> Dict[str, object]:
    """Every command of this file, two at a time; name -> CompletedProcess (or checkpoint path)."""
    def train(name, extra, updates=1):
        return cli.run("fairseq_cli.train", train_args(toy_bin, root / name, extra, updates=updates),
                       check=False)

    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(train, name, extra) for name, (extra, _) in ERRORS.items()}
        futures["ok"] = pool.submit(train, "ok", ["--mhce-shortlist", "8", "--mhce-smoothing", "per-level"], 20)
        futures["tied"] = pool.submit(train, "tied", ["--mhce-shortlist", "8", "--mhe-tie-label-embeddings"], 20)
        futures["tieshort"] = pool.submit(train, "tieshort", ["--mhce-shortlist", "8", "--mhce-tie-shortlist"], 20)
        results = {name: f.result() for name, f in futures.items()}
    for name in ("ok", "tied", "tieshort"):
        results[f"generate_{name}"] = generate(toy_bin, root / name / "checkpoint_last.pt", run=cli.run)
        results[f"ckpt_{name}"] = root / name / "checkpoint_last.pt"
    return results


pytestmark = pytest.mark.early.with_args(run_everything)


@pytest.fixture(scope="module")
def runs(early_batches) -> Dict[str, object]:
    """run_everything's results, started at the session's start."""
    return early_batches(run_everything)


@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_values_end_in_one_clear_line(runs, name):
    assert_one_clear_line(runs[name], ERRORS[name][1])


def test_shortlist_checkpoint_trains_decodes_and_carries_its_codec(runs):
    assert runs["ok"].returncode == 0, runs["ok"].stderr[-3000:]
    proc = runs["generate_ok"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(hypotheses(proc.stdout)) == 60
    import fairseq, mhce_nmt  # noqa: F401, E401  (registered: the checkpoint's Namespace allow-listed)

    state = torch.load(runs["ckpt_ok"])
    assert state["cfg"]["model"].mhce_shortlist == 8
    assert state["cfg"]["criterion"]["mhce_smoothing"] == "per-level"
    spec = state["model"]["decoder.output_projection.shortlist_spec"].tolist()
    assert spec[:2] == [48, 8] and len(spec) == 4  # [V, N, K_1, K_2] of the 40-id tail


@pytest.mark.parametrize("extra,smoothing,groups", [
    ([], "joint", 1), (["--mhce-smoothing", "per-level"], "per-level", 1),
    (["--mhce-smoothing-groups", "0"], "joint", 0)])
def test_criterion_options_reach_the_criterion(toy_bin, extra, smoothing, groups):
    _task, model, criterion, sample = build_in_process(toy_bin, ["--mhce-shortlist", "6", *extra])
    assert (criterion.smoothing, criterion.smoothing_groups) == (smoothing, groups)
    assert model.decoder.output_projection.codec.shortlist == 6
    loss, _size, log = criterion(model, sample)
    assert torch.isfinite(loss) and log["nll_loss"] > 0


def test_tied_shortlist_trains_decodes_and_shares_the_decoder_embeddings(runs):
    """--mhe-tie-label-embeddings with a shortlist: after training, the output rows are still
    the decoder input embeddings (one table), and there is no free shortlist matrix."""
    assert runs["tied"].returncode == 0, runs["tied"].stderr[-3000:]
    proc = runs["generate_tied"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(hypotheses(proc.stdout)) == 60
    import mhce_nmt  # noqa: F401

    model = torch.load(runs["ckpt_tied"])["model"]
    embed = model["decoder.embed_tokens.weight"]
    torch.testing.assert_close(model["decoder.output_projection.tail.embeddings.0"], embed, rtol=0, atol=0)
    assert "decoder.output_projection.short_bias" in model
    assert not any(k.startswith("decoder.output_projection.short.") for k in model)


def test_shortlist_only_tie_trains_decodes_and_shares_the_shortlist_rows(runs):
    """--mhce-tie-shortlist: the shortlist's rows are the decoder input embeddings (one table in
    the model, still equal after training and reloading); the tail keeps its own label embeddings."""
    assert runs["tieshort"].returncode == 0, runs["tieshort"].stderr[-3000:]
    proc = runs["generate_tieshort"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(hypotheses(proc.stdout)) == 60
    import mhce_nmt  # noqa: F401

    from fairseq import checkpoint_utils

    (model,), _cfg = checkpoint_utils.load_model_ensemble([str(runs["ckpt_tieshort"])])
    layer = model.decoder.output_projection
    assert layer.short_weight is model.decoder.embed_tokens.weight  # one table after reloading
    assert not hasattr(layer, "short") and layer.tail.embeddings[0].shape[0] == 40  # the tail's own leaves
    from recipes.run_state import output_layer_params

    # the recipe's summary counts the N rows the shortlist scores, as many as the untied Linear's
    assert output_layer_params(runs["ckpt_tieshort"]) == output_layer_params(runs["ckpt_ok"])


@pytest.mark.parametrize("mode", ["mhe", "mhp"])
def test_shortlist_only_tie_is_one_parameter_with_the_decoder_embeddings(toy_bin, mode):
    _task, model, criterion, sample = build_in_process(
        toy_bin, ["--mhce-mode", mode, "--mhce-shortlist", "6", "--mhce-tie-shortlist"])
    layer = model.decoder.output_projection
    assert layer.short_weight is model.decoder.embed_tokens.weight
    loss, _size, _log = criterion(model, sample)
    loss.backward()
    assert model.decoder.embed_tokens.weight.grad[:6].abs().sum(-1).gt(0).all()


def test_shortlist_only_tie_refuses_an_output_width_other_than_the_embeddings(toy_bin):
    from mhce_nmt.errors import MHCEConfigError

    with pytest.raises(MHCEConfigError, match="--mhce-tie-shortlist needs decoder input embeddings of width 16"):
        build_in_process(toy_bin, ["--mhce-shortlist", "6", "--mhce-tie-shortlist", "--decoder-output-dim", "16"])
