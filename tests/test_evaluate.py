"""recipes/evaluate.py: the decoding command, hypotheses back in source order and desegmented,
fairseq-generate's speed line, and the sacreBLEU scores."""
from __future__ import annotations

from pathlib import Path

import pytest

from recipes import evaluate
from recipes.textfiles import read_lines, write_lines
from recipes.vocab import WordLevel

# fairseq-generate's summary line as its logger writes it
SPEED = ("2024-05-01 10:00:00 | INFO | fairseq_cli.generate | Translated 3 sentences (21 tokens) in 0.5s "
         "(6.00 sentences/s, 42.00 tokens/s)")


def test_ordered_hypotheses_restores_order_and_counts() -> None:
    output = "S-1\tb\nH-1\t-0.1\tsecond\nH-0\t-0.2\tfirst\nD-0\t-0.2\tfirst\n"
    assert evaluate.ordered_hypotheses(output, 2) == ["first", "second"]
    with pytest.raises(RuntimeError, match="missing ids \\[2\\]"):
        evaluate.ordered_hypotheses(output, 3)


def test_decode_speed_reads_the_translated_line() -> None:
    assert evaluate.decode_speed("S-0\tx\n" + SPEED + "\n") == {
        "decode_s": 0.5, "sentences_per_s": 6.0, "tokens_per_s": 42.0}
    assert evaluate.decode_speed("no summary line") == {}


def test_the_command_decodes_the_split_at_the_length_penalty(tmp_path: Path) -> None:
    decoding = evaluate.Decoding(tmp_path / "bin", tmp_path / "c.pt", "mhe", split="valid", beam=4, batch_size=32,
                                 topk_groups=6, cpu=False, lenpen=2.0)
    cmd = decoding.command(tmp_path / "gen")
    for option, value in (("--gen-subset", "valid"), ("--beam", "4"), ("--batch-size", "32"),
                          ("--mhe-topk-groups", "6"), ("--lenpen", "2"), ("--results-path", str(tmp_path / "gen"))):
        assert cmd[cmd.index(option) + 1] == value
    assert "--cpu" not in cmd
    assert "--lenpen" not in evaluate.Decoding(tmp_path / "bin", tmp_path / "c.pt", "softmax").command(tmp_path)


def test_decode_split_writes_hypotheses_in_source_order_and_reports_the_decoding(tmp_path: Path) -> None:
    """The runner gets the command and the log path; fairseq's batch order is undone, the word
    segmenter's joiners are glued back, and the stats hold what the recipe's gen.json records."""
    source = tmp_path / "valid.de"
    write_lines(source, ["eins", "zwei", "drei"])
    segmenter = WordLevel.save(tmp_path / "segmenter.words")
    out_dir = tmp_path / "gen"
    decoding = evaluate.Decoding(tmp_path / "bin", tmp_path / "c.pt", "softmax", split="valid", lenpen=1.5)
    ran = []

    def fake_generate(cmd: list[str], log: Path) -> None:
        ran.append((cmd, log))
        (out_dir / "generate-valid.txt").write_text(
            "H-2\t-0.3\tthree \uffed.\nH-0\t-0.1\tone\nH-1\t-0.2\ttwo \uffed!\n", encoding="utf-8")
        log.write_text(SPEED + "\n", encoding="utf-8")

    out_dir.mkdir()
    stats = evaluate.decode_split(decoding, out_dir, source, segmenter, fake_generate)
    assert ran == [(decoding.command(out_dir), out_dir / "generate.log")]
    assert read_lines(out_dir / "hyp.txt") == ["one", "two!", "three."]
    assert list(stats) == ["split", "sentences", "wall_s", "beam", "lenpen", "decode_s", "sentences_per_s",
                           "tokens_per_s", "origin"]
    assert (stats["split"], stats["sentences"], stats["beam"], stats["lenpen"]) == ("valid", 3, 5, 1.5)
    assert stats["sentences_per_s"] == 6.0 and stats["origin"]["command"].startswith("fairseq-generate ")


def test_scores_carry_brevity_penalty_length_ratio_and_signatures(tmp_path: Path) -> None:
    refs, hyps = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    write_lines(refs, ["the file is open now", "click the button to save it"])
    write_lines(hyps, ["the file is open now", "click the button"])
    scores = evaluate.score_files(hyps, refs)
    assert scores["bp"] < 1 and scores["hyp_ref_ratio"] == round(8 / 11, 3) and scores["sentences"] == 2
    assert scores["bleu_signature"].startswith("nrefs:1") and scores["chrf_signature"].startswith("nrefs:1")
    write_lines(hyps, ["only one"])
    with pytest.raises(RuntimeError, match="1 hypotheses but 2 references"):
        evaluate.score_files(hyps, refs)
