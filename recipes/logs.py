"""Numbers from fairseq-train's log (its ``--log-file``, e.g. ``checkpoints/train.log``).

fairseq writes three kinds of lines: one every ``--log-interval`` updates (``key=value`` pairs:
``wps=2000.3, wpb=3100.0, num_updates=20``), one summary per epoch and one per validation
(``| key value`` pairs). Its log file repeats lines (it adds a handler per epoch), so each parser
counts every update or epoch once.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

_VALIDATION = re.compile(r"valid on 'valid' subset \| loss ([\d.]+) .*?\| ppl ([\d.]+)(?:.*?\| num_updates (\d+))?")


@dataclass(frozen=True)
class Validation:
    """One validation line: loss and perplexity on the 'valid' subset, at an update (None where the
    line names none)."""

    loss: float
    ppl: float
    update: int | None


def read_log(log: Path) -> str:
    """The log's text ('' where it does not exist yet)."""
    return log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""


def interval_median(text: str, key: str) -> float | None:
    """Median of ``key=`` over fairseq's per-interval training lines after the first (warm-up)
    one, each update counted once (fairseq's --log-file repeats lines: it adds a handler per
    epoch); epoch and validation summaries (``| key N``) do not count."""
    by_update: dict[int, float] = {}
    for line in text.splitlines():
        value, update = re.search(rf"\b{key}=([\d.]+(?:[eE][+-]?\d+)?)", line), re.search(r"\bnum_updates=(\d+)", line)
        if value and update:
            by_update.setdefault(int(update.group(1)), float(value.group(1)))
    values = [by_update[u] for u in sorted(by_update)]
    values = values[1:] or values
    return statistics.median(values) if values else None


def validations(text: str) -> list[Validation]:
    """Every validation line of the log, in its order (a repeated line repeated)."""
    return [Validation(float(loss), float(ppl), int(update) if update else None)
            for loss, ppl, update in _VALIDATION.findall(text)]


def valid_ppl_by_update(text: str) -> dict[int, float]:
    """Validation perplexity at each update where fairseq validated (the last line of an update wins)."""
    return {v.update: v.ppl for v in validations(text) if v.update is not None}


def parse_train_log(log: Path) -> dict[str, object]:
    """Parameter count, updates, wall time (``wall_s``: the whole run; ``train_wall_s``: training
    steps only, summed over epochs), median training words/s and last validation numbers from a
    fairseq train log."""
    text = read_log(log)
    stats: dict[str, object] = {}
    wps = interval_median(text, "wps")
    if wps is not None:
        stats["train_words_per_s"] = round(wps, 1)
    params = re.search(r"num\. (?:shared )?model params: ([\d,]+)", text)
    if params:
        stats["model_params"] = int(params.group(1).replace(",", ""))
    for key, pattern in (("num_updates", r"\| num_updates (\d+)"), ("wall_s", r"\| wall (\d+)")):
        values = re.findall(pattern, text)
        if values:
            stats[key] = int(values[-1])
    # each epoch summary's train_wall covers that epoch alone (fairseq resets its meters every
    # epoch): the run's is their sum, each epoch once (the log file repeats lines)
    epoch_train_walls = dict(re.findall(r"^epoch (\d+) \|.*\| train_wall (\d+)", text, re.MULTILINE))
    if epoch_train_walls:
        stats["train_wall_s"] = sum(int(seconds) for seconds in epoch_train_walls.values())
    valid = validations(text)
    if valid:
        stats["valid_loss"], stats["valid_ppl"] = valid[-1].loss, valid[-1].ppl
    return stats
