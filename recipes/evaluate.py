"""Decode a split of a binarised set with one checkpoint, and score the translations.

:func:`decode_split` runs ``fairseq-generate`` (the command of
:func:`recipes.commands.generate_command`, length penalty included), puts its hypotheses back in
source order, desegmented, into ``hyp.txt``, and reads the decoding speed from fairseq's own
summary line; :func:`score_files` scores a hypothesis file with sacreBLEU against the untouched
references. The recipes (:mod:`recipes.pipeline`) and the benchmarks (``scripts/bench_quality.py``,
``scripts/bench_translation.py``) decode and score through here, so they do it alike.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from recipes.commands import generate_command
from recipes.provenance import origin
from recipes.textfiles import read_lines, write_lines
from recipes.vocab import load_segmenter

#: runs a command to its end with its output copied to the log file (the second argument); raises
#: when the command fails
Runner = Callable[[list[str], Path], object]

_SPEED = re.compile(r"Translated ([\d,]+) sentences .*? in ([\d.]+)s \(([\d.]+) sentences/s, ([\d.]+) tokens/s")


@dataclass(frozen=True)
class Decoding:
    """One checkpoint decoding one split of a binarised set: fairseq-generate's options."""

    bin_dir: Path
    checkpoint: Path
    mode: str
    split: str = "test"
    beam: int = 5
    batch_size: int = 64
    topk_groups: int | str = 8  # mhe/mhp: level-1 groups kept per step ("all": exhaustive)
    cpu: bool = True
    lenpen: float = 1.0

    def command(self, out_dir: Path) -> list[str]:
        """``fairseq-generate``, its output to ``out_dir/generate-<split>.txt``."""
        return generate_command(self.bin_dir, self.checkpoint, out_dir, self.mode, beam=self.beam,
                                batch_size=self.batch_size, topk_groups=self.topk_groups, cpu=self.cpu,
                                lenpen=self.lenpen, subset=self.split)


def decode_split(decoding: Decoding, out_dir: Path, source: Path, segmenter: Path, run: Runner) -> dict[str, object]:
    """``fairseq-generate`` into `out_dir` (run by `run`, its output copied to ``out_dir/generate.log``), its
    hypotheses desegmented by the `segmenter` file in the order of `source` (the split's plain source text)
    into ``out_dir/hyp.txt``; returns the split, sizes, wall time, beam, length penalty, speed and origin."""
    cmd = decoding.command(out_dir)
    start = time.perf_counter()
    run(cmd, out_dir / "generate.log")
    wall = time.perf_counter() - start
    output = (out_dir / f"generate-{decoding.split}.txt").read_text(encoding="utf-8")
    log = (out_dir / "generate.log").read_text(encoding="utf-8", errors="replace")
    expected = len(read_lines(source))
    hypotheses = ordered_hypotheses(output, expected)
    desegmenter = load_segmenter(segmenter)
    write_lines(out_dir / "hyp.txt", [desegmenter.decode(tokens.split()) for tokens in hypotheses])
    return {"split": decoding.split, "sentences": expected, "wall_s": round(wall, 1), "beam": decoding.beam,
            "lenpen": decoding.lenpen, **decode_speed(log + output), "origin": origin(cmd)}


def decode_speed(text: str) -> dict[str, float]:
    """decode_s, sentences_per_s and tokens_per_s from fairseq-generate's 'Translated ...' line."""
    speed = _SPEED.search(text)
    if not speed:
        return {}
    return {"decode_s": float(speed.group(2)), "sentences_per_s": float(speed.group(3)),
            "tokens_per_s": float(speed.group(4))}


def ordered_hypotheses(generate_output: str, expected: int) -> list[str]:
    """Best hypothesis per sentence id from ``fairseq-generate`` output, in id order.

    Raises ``RuntimeError`` when any test sentence is missing or unexpected.
    """
    hypotheses: dict[int, str] = {}
    for line in generate_output.split("\n"):
        if line.startswith("H-"):
            head, _score, *tokens = line.split("\t")
            hypotheses.setdefault(int(head[2:]), tokens[0] if tokens else "")
    missing = sorted(set(range(expected)) - hypotheses.keys())
    extra = sorted(hypotheses.keys() - set(range(expected)))
    if missing or extra:
        raise RuntimeError(
            f"fairseq-generate returned {len(hypotheses)} hypotheses for {expected} test sentences "
            f"(missing ids {missing[:10]}, unexpected ids {extra[:10]})"
        )
    return [hypotheses[i] for i in range(expected)]


def score_files(hyp_file: Path, ref_file: Path) -> dict[str, object]:
    """BLEU (with its brevity penalty and hypothesis/reference length ratio) and chrF, with their
    sacreBLEU signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    hyps, refs = read_lines(hyp_file), read_lines(ref_file)
    if len(hyps) != len(refs):
        raise RuntimeError(f"{len(hyps)} hypotheses but {len(refs)} references")
    bleu, chrf = BLEU(), CHRF()
    bleu_score, chrf_score = bleu.corpus_score(hyps, [refs]), chrf.corpus_score(hyps, [refs])
    return {
        "bleu": round(bleu_score.score, 2), "bleu_signature": str(bleu.get_signature()),
        "bleu_detail": str(bleu_score), "bp": round(bleu_score.bp, 3),
        "hyp_ref_ratio": round(bleu_score.sys_len / max(bleu_score.ref_len, 1), 3),
        "chrf": round(chrf_score.score, 2), "chrf_signature": str(chrf.get_signature()), "sentences": len(hyps),
    }
