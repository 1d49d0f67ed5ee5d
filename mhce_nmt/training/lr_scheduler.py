"""``--lr-scheduler linear_budget``: linear warm-up, then a straight line down to the end learning
rate, reached after ``--total-num-update`` updates or ``--budget-hours`` hours of training, whichever
comes first (give them the values of ``--max-update`` and ``--stop-time-hours``).

A run capped by time with an update-based decay stops wherever the cap falls (on a slower or busier
machine, with the learning rate still high); decaying to 0 exactly at the budget is the schedule
that budgeted training favours (Li, Yumer and Ramanan, ICLR 2020). With no time budget this is
fairseq's ``polynomial_decay`` of power 1, update for update. With one, the learning rate depends
on the wall clock, so two runs are not bit-for-bit alike. Under fairseq-train the clock is the
trainer's ``cumulative_training_time`` (``use_trainer_clock`` below): the clock
of ``--stop-time-hours``, resumes included, and the same on every worker of a distributed run.
A budget that runs out inside the warm-up does not cut it short (with --stop-time-hours equal to the
budget, fairseq stops the run there); after the warm-up, the learning rate is then the end one.
(No `from __future__ import annotations`: fairseq reads the config dataclass's annotations as types.)
"""
import functools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.optim.lr_scheduler import FairseqLRScheduler, register_lr_scheduler
from omegaconf import II

from ..errors import MHCEConfigError


@dataclass
class LinearBudgetConfig(FairseqDataclass):
    warmup_updates: int = field(default=0, metadata={"help": "warm the learning rate up linearly for the first N updates"})
    end_learning_rate: float = field(default=0.0, metadata={"help": "learning rate at the end of the budget"})
    # explicit, not II("optimization.max_update"): fairseq 0.12 cannot compose such a default when it is
    # not given (polynomial_decay without --total-num-update fails the same way)
    total_num_update: float = field(default=0.0, metadata={
        "help": "updates at which the decay ends, as --max-update (0: no update budget)"})
    budget_hours: float = field(default=0.0, metadata={
        "help": "training hours at which the decay ends, as --stop-time-hours (0: no time budget)"})
    lr: List[float] = II("optimization.lr")


def budget_progress(updates: int, seconds: float, warmup_updates: int, warmup_end_s: float,
                    total_updates: float, budget_s: float) -> float:
    """How much of the decay is done, in [0, 1]: the larger of the update fraction
    (u - W) / (U - W) and the time fraction (t - t_W) / (T - t_W), t_W the time warm-up ended."""
    done = 0.0
    if total_updates > 0:
        done = (updates - warmup_updates) / max(total_updates - warmup_updates, 1)
    if budget_s > 0:
        done = max(done, 1.0 if warmup_end_s >= budget_s else (seconds - warmup_end_s) / (budget_s - warmup_end_s))
    return min(max(done, 0.0), 1.0)


@register_lr_scheduler("linear_budget", dataclass=LinearBudgetConfig)
class LinearBudgetSchedule(FairseqLRScheduler):
    """lr = peak * u / W while u <= W; then end + (peak - end) * (1 - progress), progress from
    :func:`budget_progress` in training seconds of `clock` (fairseq's trainer's, see :meth:`use_clock`;
    standing alone, seconds since this scheduler was built)."""

    def __init__(self, cfg: LinearBudgetConfig, optimizer: Any) -> None:
        super().__init__(cfg, optimizer)
        if not cfg.total_num_update > 0 and not cfg.budget_hours > 0:
            raise MHCEConfigError("--lr-scheduler linear_budget decays to its end after --total-num-update N updates "
                                  "or --budget-hours H hours of training: give one of them (> 0)")
        if len(cfg.lr) > 1:
            raise MHCEConfigError("--lr-scheduler linear_budget takes one --lr (its peak), not a list; give one value")
        self.peak = cfg.lr[0]
        self.budget_s = cfg.budget_hours * 3600
        self.total_updates = cfg.total_num_update
        started = time.monotonic()
        self.clock: Callable[[], float] = lambda: time.monotonic() - started
        self.warmup_end_s: Optional[float] = None if cfg.warmup_updates > 0 else 0.0
        self.optimizer.set_lr(self.peak / cfg.warmup_updates if cfg.warmup_updates > 0 else self.peak)

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Count training seconds with `clock` (fairseq's Trainer.cumulative_training_time)."""
        self.clock = clock

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "warmup_end_s": self.warmup_end_s}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.warmup_end_s = state_dict.get("warmup_end_s", self.warmup_end_s)

    def step_update(self, num_updates: int) -> float:
        warmup = self.cfg.warmup_updates
        if warmup > 0 and num_updates <= warmup:
            if num_updates == warmup and self.warmup_end_s is None:  # fairseq calls it again at epoch ends
                self.warmup_end_s = self.clock()  # the decay's line starts here
            self.optimizer.set_lr(self.peak * num_updates / warmup)
            return self.optimizer.get_lr()
        if self.warmup_end_s is None:  # resumed past the warm-up from a state that never recorded its end
            self.warmup_end_s = self.clock()
        done = budget_progress(num_updates, self.clock(), warmup, self.warmup_end_s, self.total_updates,
                               self.budget_s)
        self.optimizer.set_lr(self.cfg.end_learning_rate + (self.peak - self.cfg.end_learning_rate) * (1 - done))
        return self.optimizer.get_lr()


def use_trainer_clock() -> None:
    """After fairseq's Trainer builds its scheduler, hand a scheduler that counts time (`use_clock`) the
    trainer's `cumulative_training_time`: fairseq gives schedulers no clock of its own."""
    from fairseq.trainer import Trainer

    build = Trainer._build_optimizer
    if getattr(build, "_mhce_clock", False):
        return

    @functools.wraps(build)
    def build_with_clock(self, *args, **kwargs):
        build(self, *args, **kwargs)
        if hasattr(self._lr_scheduler, "use_clock"):
            self._lr_scheduler.use_clock(self.cumulative_training_time)

    build_with_clock._mhce_clock = True
    Trainer._build_optimizer = build_with_clock


use_trainer_clock()
