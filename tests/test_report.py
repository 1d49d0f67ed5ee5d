"""The closing report of a recipe run and the interactive command it prints."""
from __future__ import annotations

from pathlib import Path

from recipes.commands import USER_DIR, interactive_command
from recipes.report import example_indices, examples, report, summary_table

SUMMARY = {
    "pair": "de-en", "output": "mhe (heads 127x126)", "data_pairs": {"train": 40788, "valid": 1526, "test": 2000},
    "dictionary": {"de": 16004, "en": 16004}, "model_params": 17_900_000, "num_updates": 2100,
    "wall_s": 2400.0, "train_wall_s": 93.0, "train_words_per_s": 2890.4, "precision": "fp32",
    "valid_ppl": 8.123, "bleu": 31.42, "chrf": 55.1,
    "bp": 0.97, "hyp_ref_ratio": 0.9705, "decode_sentences_per_s": 39.9, "decode_tokens_per_s": 812.35,
}


def test_summary_table_shows_every_number_a_user_asks_for():
    table = summary_table(SUMMARY)
    expected = {"data (train / valid / test pairs)": "40,788 / 1,526 / 2,000", "updates": "2,100",
                "training time (wall clock)": "40.0 min", "training speed (target words/s)": "2,890.4",
                "training precision": "fp32", "test BLEU": "31.42", "test chrF": "55.10",
                "brevity penalty (hyp/ref length)": "0.970 (0.971)",
                "decoding (sentences/s)": "39.9", "decoding (tokens/s)": "812.4", "output layer": "mhe (heads 127x126)",
                "dictionaries (entries)": "de 16,004, en 16,004"}
    lines = table.splitlines()
    for label, value in expected.items():
        assert any(line.strip().startswith(label) and line.rstrip().endswith(value) for line in lines), label
    assert "output_layer_params" not in table and "of which" not in table  # absent keys are left out


def test_examples_are_evenly_spaced():
    assert example_indices(5, 2000) == [0, 400, 800, 1200, 1600]
    assert example_indices(5, 3) == [0, 1, 2]
    text = examples([f"s{i}" for i in range(10)], [f"r{i}" for i in range(10)], [f"h{i}" for i in range(10)], 2)
    assert text.splitlines() == ["  [1] source     s0", "      reference  r0", "      hypothesis h0",
                                 "  [2] source     s5", "      reference  r5", "      hypothesis h5"]


def test_report_ends_with_the_command():
    text = report(SUMMARY, "  [1] ...", "fairseq-interactive bin --path x.pt")
    assert text.splitlines()[1] == "=== de-en with mhe (heads 127x126) ==="
    assert text.rstrip().endswith("fairseq-interactive bin --path x.pt")


def test_interactive_command_applies_and_removes_sentencepiece():
    cmd = interactive_command(Path("bin"), Path("ckpt/checkpoint_best.pt"), "mhe", Path("seg/spm.model"),
                              beam=4, topk_groups=6)
    assert cmd == ["fairseq-interactive", "bin", "--user-dir", str(USER_DIR), "--task", "translation_mhce",
                   "--mhe-topk-groups", "6", "--path", "ckpt/checkpoint_best.pt", "--beam", "4",
                   "--bpe", "sentencepiece", "--sentencepiece-model", "seg/spm.model", "--cpu"]
    stock = interactive_command(Path("bin"), Path("c.pt"), "softmax", None, cpu=False)
    assert stock == ["fairseq-interactive", "bin", "--user-dir", str(USER_DIR), "--task", "translation",
                     "--path", "c.pt", "--beam", "5"]
