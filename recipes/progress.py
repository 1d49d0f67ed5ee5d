"""One short progress line per stretch of training, from fairseq-train's own log lines.

fairseq's full output goes to the log file; the terminal gets, every `every_s` seconds of
training and after each validation, e.g.::

    [train] update 350 | 6.1 min trained, ~13.9 min left | train ppl 45.2 | valid ppl 40.1 (update 213)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

_NUMBER = r"([\d.]+(?:[eE][+-]?\d+)?)"  # fairseq prints large values as 1.2e+06
_INNER = re.compile(rf"(?:\bppl={_NUMBER}.*?)?\bnum_updates=(\d+).*?\bwall=(\d+)")
_VALID = re.compile(rf"valid on '[^']+' subset \|.*?\| ppl {_NUMBER}.*?\| num_updates (\d+)")


@dataclass
class TrainProgress:
    """Turns fairseq-train output lines into progress lines (None when there is nothing to say).

    max_update / train_minutes: the run's stopping rules (None = not set), for "min left".
    """

    max_update: Optional[int] = None
    train_minutes: Optional[float] = None
    every_s: float = 60.0
    _last_print_wall: float = field(default=-1e9, init=False)
    _valid: Optional[str] = field(default=None, init=False)
    _line: Optional[str] = field(default=None, init=False)

    def minutes_left(self, updates: int, wall_s: float) -> Optional[float]:
        """Whichever stopping rule comes first: the time budget, or the update budget at the pace so far.

        The pace is updates / wall_s since the start, validations included: fairseq's per-interval
        ups would fall tenfold in the interval that holds a validation and jolt the estimate.
        """
        left = []
        if self.train_minutes:
            left.append(max(0.0, self.train_minutes - wall_s / 60))
        if self.max_update and updates > 0 and wall_s > 0:
            left.append(max(0, self.max_update - updates) * wall_s / updates / 60)
        return min(left) if left else None

    def __call__(self, line: str) -> Optional[str]:
        valid = _VALID.search(line)
        if valid:
            self._valid = f"valid ppl {float(valid.group(1)):g} (update {int(valid.group(2))})"
            return self._line and f"{self._line} | {self._valid}"
        inner = _INNER.search(line)
        if not inner:
            return None
        updates, wall = int(inner.group(2)), float(inner.group(3))
        left = self.minutes_left(updates, wall)
        total = f"/{self.max_update}" if self.max_update else ""
        # MHS training logs only a sampled nll, no ppl
        ppl = f"train ppl {float(inner.group(1)):g}" if inner.group(1) else "train ppl - (sampled softmax)"
        self._line = (f"[train] update {updates}{total} | {wall / 60:.1f} min trained"
                      + (f", ~{left:.1f} min left" if left is not None else "") + f" | {ppl}")
        if wall - self._last_print_wall < self.every_s:
            return None
        self._last_print_wall = wall
        return self._line + (f" | {self._valid}" if self._valid else "")
