"""Bad input reaches the user as one clear line, before any training or decoding work.

Every fairseq command runs for real, as its own process (tests/fastcli.py: like toy.run_cli, but
forked from a process that has already imported torch & co.), two at a time from one module
fixture (on the session-wide `cli` server of conftest.py). An mhce error must be the last
line of stderr, as `mhce_nmt: <problem and fix>`, with no traceback (mhce_nmt.errors installs
the hook). Also: an empty training split is one line naming the file, a checkpoint never
meets a dictionary or factorisation other than its own silently, and awkward test data (empty
line, a source longer than the model's positions, unknown words) still gives one hypothesis per
input sentence.
"""
from __future__ import annotations

import random
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict

import pytest

from clear_errors import assert_one_clear_line, last_line
from fastcli import CLIServer
from toy import PLUGIN, hypotheses, train_args

MAX_SOURCE_POSITIONS = 64

# name -> (extra fairseq-train options, text the one error line must contain)
TRAIN_ERRORS = {
    "heads_product_too_small": (["--mhce-heads", "4,4"],
                                "the product of --mhce-heads must be >= 48"),
    "head_of_size_one": (["--mhce-heads", "1,64"], "every head needs at least 2 classes"),
    "heads_trailing_comma": (["--mhce-heads", "7,"], "--mhce-heads '7,' is malformed"),
    "heads_not_integers": (["--mhce-heads", "a,b"], "'a' is not an integer"),
    "share_embed_with_mhe": (["--mhce-mode", "mhe", "--share-decoder-input-output-embed"],
                             "use --mhe-tie-label-embeddings instead"),
    "tie_shortlist_without_shortlist": (["--mhce-mode", "mhe", "--mhce-tie-shortlist"],
                                        "--mhce-tie-shortlist ties the shortlist's rows"),
    "adaptive_softmax": (["--adaptive-softmax-cutoff", "20"],
                         "--adaptive-softmax-cutoff cannot be combined with transformer_mhce"),
    "criterion_with_stock_arch": (["--arch", "transformer_tiny"],  # the later --arch wins
                                  "--criterion mhce_cross_entropy needs a factored output layer"),
    "factored_embeddings_with_mhs": (["--mhce-embeddings", "factored", "--mhce-mode", "mhs"],
                                     "--mhce-embeddings factored applies to --mhce-mode mhp and mhe, not mhs"),
    "factored_embeddings_with_tied_labels": (["--mhce-embeddings", "factored", "--mhe-tie-label-embeddings"],
                                             "which --mhce-embeddings factored does not have"),
}
UNKNOWN_MODE = "unknown_mode"

# the edge-case test set: (source = reference) lines
EDGE_LINES = [
    "w1 w2 w3",
    "",  # empty line
    " ".join(f"w{random.Random(5).randrange(40)}" for _ in range(400)),  # > max source positions
    "w4 qqq w5 zzz",  # words that are not in the dictionary
    "w7 w8",
]


def bigger_dictionary_bin(toy_bin: Path, dest: Path, extra_words: int = 10) -> Path:
    """The toy data-bin with `extra_words` more target words (58 instead of 48 symbols)."""
    dest.mkdir()
    for f in toy_bin.iterdir():
        if f.name.startswith("dict.") or f.name.startswith("test."):
            shutil.copy(f, dest / f.name)
    with open(dest / "dict.tgt.txt", "a") as out:
        out.writelines(f"extra{i} 1\n" for i in range(extra_words))
    return dest


def empty_train_bin(cli: CLIServer, toy_bin: Path, root: Path) -> Path:
    """A data-bin with the toy dictionaries, an empty train split and a one-line valid split."""
    raw = root / "empty_raw"
    raw.mkdir()
    for side in ("src", "tgt"):
        (raw / f"train.{side}").write_text("")
        (raw / f"valid.{side}").write_text("w1 w2\n")
    cli.run("fairseq_cli.preprocess", [
        "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw / "train",
        "--validpref", raw / "valid", "--destdir", root / "empty_bin", "--srcdict",
        toy_bin / "dict.src.txt", "--tgtdict", toy_bin / "dict.tgt.txt", "--workers", "1"])
    return root / "empty_bin"


def edge_case_bin(cli: CLIServer, toy_bin: Path, root: Path) -> Path:
    raw = root / "edge_raw"
    raw.mkdir()
    for side in ("src", "tgt"):
        (raw / f"test.{side}").write_text("\n".join(EDGE_LINES) + "\n")
    cli.run("fairseq_cli.preprocess", [
        "--source-lang", "src", "--target-lang", "tgt", "--testpref", raw / "test",
        "--destdir", root / "edge_bin", "--srcdict", toy_bin / "dict.src.txt",
        "--tgtdict", toy_bin / "dict.tgt.txt", "--workers", "1"])
    return root / "edge_bin"


@pytest.fixture(scope="module")
def runs(early_batches) -> Dict[str, object]:
    """Every command of this file, two at a time, started at the session's start; name ->
    CompletedProcess (or data path)."""
    return early_batches(run_everything)


def run_everything(cli: CLIServer, toy_bin: Path, root: Path) -> Dict[str, object]:
    run_cli = cli.run

    def bad(name, extra):
        return run_cli("fairseq_cli.train", train_args(toy_bin, root / name, extra, updates=2),
                       check=False)

    out: Dict[str, object] = {}
    with ThreadPoolExecutor(2) as pool:
        # a tiny mhe model (2 heads, sizes chosen automatically) for the decoding cases
        model = pool.submit(run_cli, "fairseq_cli.train", train_args(
            toy_bin, root / "model", ["--mhce-mode", "mhe", "--mhce-num-heads", "2",
                                      "--max-source-positions", str(MAX_SOURCE_POSITIONS)],
            updates=2))
        edge = pool.submit(edge_case_bin, cli, toy_bin, root)
        empty = pool.submit(empty_train_bin, cli, toy_bin, root)
        jobs = {name: pool.submit(bad, name, extra) for name, (extra, _) in TRAIN_ERRORS.items()}
        jobs[UNKNOWN_MODE] = pool.submit(bad, UNKNOWN_MODE, ["--mhce-mode", "bogus"])
        jobs["empty_train_split"] = pool.submit(
            run_cli, "fairseq_cli.train", train_args(empty.result(), root / "empty", [], updates=2),
            check=False)
        out["empty_bin"] = empty.result()
        model.result()
        ckpt = root / "model" / "checkpoint_last.pt"
        out["ckpt"] = ckpt

        def gen(data, extra):
            return run_cli("fairseq_cli.generate", [
                data, "--user-dir", PLUGIN, "--path", ckpt, "--task", "translation_mhce",
                "--beam", "5", "--batch-size", "16", "--cpu", *extra], check=False)

        jobs["topk_out_of_range"] = pool.submit(gen, toy_bin, ["--mhe-topk-groups", "999"])
        jobs["topk_malformed"] = pool.submit(gen, toy_bin, ["--mhe-topk-groups", "x"])
        jobs["other_dictionary"] = pool.submit(
            gen, bigger_dictionary_bin(toy_bin, root / "bigger_dict"), [])
        jobs["override_num_heads"] = pool.submit(
            gen, toy_bin, ["--model-overrides", "{'mhce_num_heads': 3}"])
        jobs["override_heads"] = pool.submit(
            gen, toy_bin, ["--model-overrides", "{'mhce_heads': '4,4,4'}"])
        jobs["edge_truncated"] = pool.submit(
            gen, edge.result(), ["--truncate-source", "--max-source-positions", str(MAX_SOURCE_POSITIONS)])
        out.update({name: job.result() for name, job in jobs.items()})
    return out


# ---------------------------------------------------------------------------------------------
# fairseq-train: bad options
# ---------------------------------------------------------------------------------------------


pytestmark = pytest.mark.early.with_args(run_everything)


@pytest.mark.parametrize("name", sorted(TRAIN_ERRORS))
def test_bad_train_option_is_one_clear_line_before_training(runs, name):
    proc = runs[name]
    assert_one_clear_line(proc, TRAIN_ERRORS[name][1])
    # nothing was trained: the error comes while the model / criterion is built
    assert "Start iterating over samples" not in proc.stdout + proc.stderr
    assert "train_inner" not in proc.stdout


def test_empty_train_split_is_one_clear_line_naming_the_file(runs):
    """fairseq itself fails deep in its indexed dataset (it cannot mmap a zero-byte file)."""
    empty_file = runs["empty_bin"] / "train.src-tgt.src.bin"
    assert empty_file.stat().st_size == 0
    assert_one_clear_line(runs["empty_train_split"],
                          f"the train split is empty: {empty_file} holds no sentences")
    assert "train_inner" not in runs["empty_train_split"].stdout


def test_unknown_mode_is_an_argparse_choice_error(runs):
    proc = runs[UNKNOWN_MODE]
    assert proc.returncode == 2
    line = last_line(proc.stderr)
    assert "argument --mhce-mode: invalid choice: 'bogus'" in line and "'mhe'" in line, line
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# fairseq-generate: bad options, mismatched checkpoints
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,expected", [
    ("topk_out_of_range", "--mhe-topk-groups value 999 for level 1 is out of range"),
    ("topk_malformed", "--mhe-topk-groups 'x' is malformed"),
])
def test_bad_generate_option_is_one_clear_line(runs, name, expected):
    proc = runs[name]
    assert_one_clear_line(proc, expected)
    assert not hypotheses(proc.stdout)


def test_checkpoint_with_another_target_dictionary(runs):
    """A data-bin whose target dictionary differs from the one the codec was built for."""
    assert_one_clear_line(runs["other_dictionary"],
                          "trained with a target dictionary of 48 entries and heads 7,7, but the "
                          "target dictionary given has 58")


def test_stored_heads_take_precedence_over_num_heads(runs):
    """The checkpoint stores the resolved head sizes: overriding --mhce-num-heads cannot
    re-derive another factorisation (a 3-head model would not load the 2-head weights)."""
    proc = runs["override_num_heads"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(hypotheses(proc.stdout)) == 60


def test_overriding_the_stored_heads_is_a_clear_mismatch(runs):
    assert_one_clear_line(runs["override_heads"],
                          "checkpoint codec (V=48, heads 7x7) does not match the model built for "
                          "this dictionary (V=48, heads 4x4x4)")


def test_checkpoint_config_holds_the_resolved_codec(runs):
    import torch

    import fairseq, mhce_nmt  # noqa: F401, E401  (registered: the checkpoint's Namespace allow-listed)

    state = torch.load(runs["ckpt"])
    model_cfg = state["cfg"]["model"]
    assert model_cfg.mhce_heads == "7,7" and model_cfg.mhce_vocab_size == 48
    assert state["model"]["decoder.output_projection.codec_spec"].tolist() == [48, 7, 7]


# ---------------------------------------------------------------------------------------------
# awkward test data: count in == count out
# ---------------------------------------------------------------------------------------------


def test_empty_long_and_unknown_lines_each_get_a_hypothesis(runs):
    """fairseq refuses a source longer than the model's positions (loudly, by default) and
    --skip-invalid-size-inputs-valid-test would drop it; --truncate-source with the model's
    --max-source-positions keeps every sentence."""
    proc = runs["edge_truncated"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    hyps = hypotheses(proc.stdout)
    assert sorted(hyps) == list(range(len(EDGE_LINES)))  # count in == count out
    sources = {int(line.split("\t")[0][2:]): line.split("\t")[1]
               for line in proc.stdout.splitlines() if line.startswith("S-")}
    assert sources[1] == ""
    assert len(sources[2].split()) == MAX_SOURCE_POSITIONS - 1  # + </s>
    assert sources[3] == "w4 <unk> w5 <unk>"


# ---------------------------------------------------------------------------------------------
# the hook itself
# ---------------------------------------------------------------------------------------------


def test_excepthook_prints_mhce_errors_as_one_line_and_keeps_the_rest(capsys, monkeypatch):
    from mhce_nmt.codec import CodecError
    from mhce_nmt.errors import MHCEConfigError, install_excepthook

    install_excepthook()
    install_excepthook()  # idempotent: never wraps itself
    hook = sys.excepthook
    assert getattr(hook, "_mhce_hook", False)
    monkeypatch.delenv("MHCE_TRACEBACK", raising=False)
    for err in (MHCEConfigError("bad thing: do this"), CodecError("bad heads: do that")):
        try:
            raise err
        except ValueError as caught:
            hook(type(caught), caught, caught.__traceback__)
        assert capsys.readouterr().err == f"mhce_nmt: {err}\n"
    try:
        raise RuntimeError("not ours")
    except RuntimeError as caught:
        hook(type(caught), caught, caught.__traceback__)
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("RuntimeError: not ours")
    monkeypatch.setenv("MHCE_TRACEBACK", "1")  # debugging: the full traceback again
    try:
        raise MHCEConfigError("shown in full")
    except ValueError as caught:
        hook(type(caught), caught, caught.__traceback__)
    err = capsys.readouterr().err
    assert "Traceback" in err and "MHCEConfigError: shown in full" in err
