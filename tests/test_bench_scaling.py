"""scripts/bench_scaling: the records' fields, their parameter counts against a hand count, the
factored variant's smaller vocabulary share, failed configurations as records, one table row per record.
Tiny runs (V=2,000, one step of 100 tokens, two sentences), each configuration in its own process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import bench_scaling
from scripts.bench_scaling import SOURCE_VOCAB
from toy import REPO

V = 2000
D, FFN, LAYERS = 256, 1024, 3  # the CPU demo's model (mhce_nmt.defaults.CPU_MODEL_SIZES)
FIELDS = ("vocab", "method", "variant", "train_words_per_s", "decode_sentences_per_s", "decode_tokens_per_s",
          "peak_mb", "params", "vocab_params", "shortlist", "max_tokens", "commit", "dirty", "command", "cpu",
          "threads", "error")


@pytest.fixture(autouse=True)
def configurations_in_forks(monkeypatch: pytest.MonkeyPatch, cli) -> None:
    """Each configuration still runs in a process of its own (`--config`), forked from the test
    session's pre-imported server instead of started afresh."""
    def measure(config: bench_scaling.Config) -> dict:
        done = cli.run("scripts.bench_scaling", bench_scaling.config_arguments(config), cwd=REPO, check=False,
                       env={"OMP_NUM_THREADS": str(config.threads)})
        return bench_scaling.measured(done)

    monkeypatch.setattr(bench_scaling, "measure_in_subprocess", measure)


def tiny_run(out: Path, *options: str) -> list[dict]:
    """bench_scaling's main on a one-thread, one-step, two-sentence budget."""
    return bench_scaling.main([*options, "--steps", "1", "--decode-sentences", "2", "--max-tokens", "100",
                               "--threads", "1", "--out", str(out)])


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """The folder of the run that `records` made."""
    return tmp_path_factory.mktemp("scaling")


@pytest.fixture(scope="module")
def records(out) -> list[dict]:
    """softmax, mhe and mhe with factored embeddings at V=2,000."""
    return tiny_run(out, "--vocabs", str(V), "--methods", "softmax", "mhe", "--variants", "full", "factored")


def by_name(records: list[dict], method: str, variant: str = "") -> dict:
    return next(r for r in records if r["method"] == method and r["variant"] == variant)


def tied_softmax_params() -> tuple[int, int]:
    """(params, vocab_params) of the tied-softmax demo model by hand: post-norm layers, no final layer
    norms; the decoder's V x d table is its output projection too."""
    attention = 4 * (D * D + D)
    ffn = D * FFN + FFN + FFN * D + D
    norm = 2 * D
    encoder_layer = attention + ffn + 2 * norm
    decoder_layer = 2 * attention + ffn + 3 * norm
    return SOURCE_VOCAB * D + V * D + LAYERS * (encoder_layer + decoder_layer), V * D


def test_every_configuration_gives_a_full_record(records):
    assert [(r["method"], r["variant"]) for r in records] == [("softmax", ""), ("mhe", ""), ("mhe", "factored")]
    for r in records:
        assert set(FIELDS) <= set(r) and r["error"] == "" and r["vocab"] == V and r["max_tokens"] == 100
        assert r["threads"] == 1
        for key in ("train_words_per_s", "decode_sentences_per_s", "decode_tokens_per_s", "peak_mb"):
            assert r[key] > 0, key
        # every hypothesis is forced to DECODE_LENGTH tokens and its eos
        assert r["decode_tokens_per_s"] == pytest.approx(r["decode_sentences_per_s"] * (bench_scaling.DECODE_LENGTH + 1))


def test_parameter_counts_equal_a_hand_count(records):
    softmax = by_name(records, "softmax")
    assert (softmax["params"], softmax["vocab_params"]) == tied_softmax_params()
    assert softmax["shortlist"] == 0


def test_shortlist_is_the_plugin_default(records):
    # mhce_nmt.defaults.recommended_shortlist("mhe", 2000): a third of V, below its 1,024
    assert by_name(records, "mhe")["shortlist"] == by_name(records, "mhe", "factored")["shortlist"] == V // 3


def test_factored_embeddings_take_fewer_vocabulary_parameters(records):
    full, factored = by_name(records, "mhe"), by_name(records, "mhe", "factored")
    assert factored["vocab_params"] < full["vocab_params"]
    assert factored["params"] < full["params"]
    # the decoder body is the same: what the model loses beyond vocab_params is the encoder's table
    assert full["params"] - full["vocab_params"] > factored["params"] - factored["vocab_params"]


def test_the_table_has_a_row_per_record_with_ratios_to_softmax(records):
    table = bench_scaling.markdown(records)
    rows = [line for line in table.splitlines() if line.startswith(f"| {V:,} |")]
    assert len(rows) == len(records)
    assert "| softmax | 0 |" in rows[0] and rows[0].count("1.00x") == 4
    mhe = by_name(records, "mhe")
    assert f"{mhe['vocab_params'] / by_name(records, 'softmax')['vocab_params']:.2f}x" in rows[1]


def test_written_files_hold_the_records(records, out):
    assert json.loads((out / "scaling.json").read_text()) == records
    assert (out / "scaling.md").read_text().endswith(bench_scaling.markdown(records))


def test_a_configuration_that_cannot_run_is_an_error_record(tmp_path):
    failed, = tiny_run(tmp_path, "--vocabs", "2", "--methods", "adaptive")  # no cutoffs fit
    assert "too small for an adaptive softmax" in failed["error"]
    assert failed["train_words_per_s"] is None and failed["params"] is None
    assert failed["error"] in bench_scaling.markdown([failed])
