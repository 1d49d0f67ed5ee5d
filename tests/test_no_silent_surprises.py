"""Combinations that used to change behaviour without a word now say so (README, Options).

- --share-all-embeddings with mhp/mhe: the input embeddings are still shared, the output layer
  is not tied; a logged warning says so (mhe: use --mhe-tie-label-embeddings).
- --print-alignment under translation_mhce: fairseq's own (exhaustive) generator, with a warning.
- MHS training (a sampled softmax) logs sampled_nll_loss, never an nll_loss / ppl that is not exact.
(An empty data split is a one-line error: tests/test_bad_input.py.)
"""
from __future__ import annotations

import argparse
import logging
import math
import re

import pytest
import torch
from fairseq import checkpoint_utils
from fairseq.logging import metrics
from fairseq.sequence_generator import SequenceGeneratorWithAlignment
from fairseq.sequence_scorer import SequenceScorer

import mhce_nmt  # noqa: F401
from mhce_nmt.adapters.criterion import MHCECrossEntropyCriterion
from mhce_nmt.adapters.generator import MHCESequenceGenerator
from toy import build_in_process, generate, hypotheses, train_args

pytestmark = pytest.mark.trains("mhe2", "mhs")

SHARE_ALL_WARNING = "--share-all-embeddings with --mhce-mode"
ALIGNMENT_WARNING = "--print-alignment: coarse-to-fine decoding computes no alignments"


def warnings_from(caplog, logger: str):
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.WARNING]


@pytest.mark.parametrize("extra,warned,output_tied", [
    (["--mhce-mode", "mhp", "--share-all-embeddings"], True, False),
    (["--mhce-mode", "mhe", "--share-all-embeddings"], True, False),
    (["--mhce-mode", "mhe", "--mhce-shortlist", "10", "--share-all-embeddings"], True, False),
    (["--mhce-mode", "mhe", "--share-all-embeddings", "--mhe-tie-label-embeddings"], False, True),
    (["--mhce-mode", "mhe", "--mhce-shortlist", "10", "--share-all-embeddings", "--mhe-tie-label-embeddings"],
     False, True),
    (["--mhce-mode", "mhs", "--share-all-embeddings"], False, True),
    (["--mhce-mode", "mhe"], False, False),
    (["--mhce-mode", "mhp", "--mhce-shortlist", "10", "--share-all-embeddings", "--mhce-tie-shortlist"], True, True),
], ids=["mhp", "mhe", "mhe-shortlist", "mhe-tied", "mhe-shortlist-tied", "mhs", "mhe-no-sharing",
        "mhp-shortlist-only-tied"])
def test_share_all_embeddings_warns_when_the_output_stays_untied(toy_bin, caplog, extra, warned,
                                                                 output_tied):
    caplog.set_level(logging.WARNING, logger="mhce_nmt.adapters.model")
    _task, model, _criterion, _sample = build_in_process(toy_bin, extra)
    messages = [m for m in warnings_from(caplog, "mhce_nmt.adapters.model") if SHARE_ALL_WARNING in m]
    assert len(messages) == int(warned), messages
    if "--mhce-tie-shortlist" in extra:  # says what is tied instead of suggesting another option
        assert "only the shortlist's output rows are tied" in messages[0], messages[0]
    elif warned:  # the tying hint only where it applies (mhe, with or without a shortlist)
        hint = "mhe" in extra
        assert ("add --mhe-tie-label-embeddings" in messages[0]) == hint, messages[0]
    sharing = "--share-all-embeddings" in extra
    assert (model.encoder.embed_tokens is model.decoder.embed_tokens) == sharing
    embed = model.decoder.embed_tokens.weight
    assert any(p is embed for p in model.decoder.output_projection.parameters()) == output_tied


def test_share_all_embeddings_warning_reaches_fairseq_train(toy_bin, tmp_path, cli):
    proc = cli.run("fairseq_cli.train", train_args(
        toy_bin, tmp_path / "save", ["--mhce-mode", "mhp", "--share-all-embeddings"], updates=2))
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if SHARE_ALL_WARNING in l]
    assert lines and "WARNING" in lines[0] and "output layer is not tied" in lines[0], lines


def load(trained, toy_bin, name):
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(trained(name)["ckpt"])], arg_overrides={"data": str(toy_bin)})
    return [m.eval() for m in models], task


@pytest.mark.parametrize("args,generator,warned", [
    (dict(print_alignment="hard"), SequenceGeneratorWithAlignment, True),
    (dict(print_alignment="hard", score_reference=True), SequenceScorer, False),
    (dict(), MHCESequenceGenerator, False),
], ids=["alignment", "score-reference", "plain"])
def test_print_alignment_falls_back_with_a_warning(trained, toy_bin, caplog, args, generator, warned):
    models, task = load(trained, toy_bin, "mhe2")
    caplog.set_level(logging.WARNING, logger="mhce_nmt.adapters.task")
    gen = task.build_generator(models, argparse.Namespace(**args))
    assert type(gen) is generator
    messages = [m for m in warnings_from(caplog, "mhce_nmt.adapters.task") if ALIGNMENT_WARNING in m]
    assert len(messages) == int(warned), messages


def test_print_alignment_warning_reaches_fairseq_generate(trained, toy_bin, cli):
    proc = generate(toy_bin, trained("mhe2")["ckpt"],
                    ["--task", "translation_mhce", "--print-alignment", "hard"], cli.run)
    output = proc.stdout + proc.stderr
    assert sum(ALIGNMENT_WARNING in line for line in output.splitlines()) == 1, output[-3000:]
    assert len(hypotheses(proc.stdout)) == 60
    assert len(re.findall(r"^A-\d+\t", proc.stdout, re.M)) == 60  # the alignments it asked for


def reduced(logging_output):
    with metrics.aggregate() as agg:
        MHCECrossEntropyCriterion.reduce_metrics([logging_output])
        return agg.get_smoothed_values()


def test_mhs_training_logs_the_sampled_nll_under_its_own_name(trained, toy_bin):
    """Training: sampled_nll_loss (below the exact nll: fewer classes in the softmax), no
    nll_loss, no ppl. Eval: the exact nll_loss and its ppl. One short sentence, so that its
    targets' groups leave some of the 7 out of the sampled softmax."""
    models, task = load(trained, toy_bin, "mhs")
    model = models[0]
    task.load_dataset("valid")
    sample = next(iter(task.get_batch_iterator(dataset=task.dataset("valid"), max_sentences=1,
                                               max_positions=(1024, 1024)).next_epoch_itr(shuffle=False)))
    criterion = MHCECrossEntropyCriterion(task, label_smoothing=0.0)
    with torch.no_grad():
        lprobs = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
        keep = sample["target"].ne(task.target_dictionary.pad())
        exact = -lprobs.gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)[keep].sum()
        model.decoder.output_projection.train()  # sampled groups; the rest stays deterministic
        torch.manual_seed(0)
        _, _, train_log = criterion(model, sample)
        model.decoder.output_projection.eval()
        _, _, eval_log = criterion(model, sample)
    assert "nll_loss" not in train_log and float(train_log["sampled_nll_loss"]) < float(exact)
    values = reduced(train_log)
    assert "nll_loss" not in values and "ppl" not in values
    bits = float(train_log["sampled_nll_loss"]) / train_log["ntokens"] / math.log(2)
    assert values["sampled_nll_loss"] == pytest.approx(bits, abs=1e-3)
    assert "sampled_nll_loss" not in eval_log
    torch.testing.assert_close(eval_log["nll_loss"], exact, atol=1e-3, rtol=1e-4)
    values = reduced(eval_log)
    exact_bits = float(exact) / eval_log["ntokens"] / math.log(2)
    assert "sampled_nll_loss" not in values
    assert values["ppl"] == pytest.approx(2 ** exact_bits, rel=1e-2)


def test_mhs_train_log_has_no_sampled_ppl_and_mhe_keeps_its_exact_one(trained):
    """fairseq-train's own log lines (--disable-validation: training only)."""
    mhs = [l for l in trained("mhs")["log"].splitlines() if "train_inner" in l]
    assert mhs and all("sampled_nll_loss=" in l and not re.search(r"[ ,]nll_loss=|ppl=", l) for l in mhs)
    mhe = [l for l in trained("mhe2")["log"].splitlines() if "train_inner" in l]
    assert mhe and all(re.search(r" nll_loss=.*ppl=", l) and "sampled" not in l for l in mhe)
