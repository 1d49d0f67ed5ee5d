"""--lr-scheduler linear_budget against fairseq's own polynomial_decay (power 1): update for update
without a time budget; with one, under a clock that advances a fixed step per update, equal to
polynomial_decay ending at the update where the time runs out; resumes continue the same line."""
from __future__ import annotations

import re
from typing import List

import pytest
import torch
from fairseq.optim import FairseqOptimizer
from fairseq.optim.lr_scheduler.polynomial_decay_schedule import (
    PolynomialDecayLRSchedule, PolynomialDecayLRScheduleConfig)

from mhce_nmt.errors import MHCEConfigError
from mhce_nmt.training.lr_scheduler import LinearBudgetConfig, LinearBudgetSchedule
from clear_errors import assert_one_clear_line
from toy import train_args

PEAK = 2e-3


class SGDOptimizer(FairseqOptimizer):
    """The smallest FairseqOptimizer: one parameter, plain SGD (the schedules only set its lr)."""

    def __init__(self) -> None:
        super().__init__(None)
        self._optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


class StepClock:
    """A trainer's training-time clock in tests: `dt` seconds pass with every update."""

    def __init__(self, dt: float) -> None:
        self.now, self.dt = 0.0, dt

    def __call__(self) -> float:
        return self.now


def budget(warmup: int, updates: float, hours: float, end: float = 0.0,
           clock: StepClock | None = None) -> LinearBudgetSchedule:
    cfg = LinearBudgetConfig(warmup_updates=warmup, end_learning_rate=end, total_num_update=updates,
                             budget_hours=hours, lr=[PEAK])
    schedule = LinearBudgetSchedule(cfg, SGDOptimizer())
    if clock is not None:
        schedule.use_clock(clock)
    return schedule


def polynomial(warmup: int, updates: float, end: float = 0.0) -> PolynomialDecayLRSchedule:
    cfg = PolynomialDecayLRScheduleConfig(warmup_updates=warmup, end_learning_rate=end, power=1.0,
                                          total_num_update=updates, lr=[PEAK])
    return PolynomialDecayLRSchedule(cfg, SGDOptimizer())


def rates(schedule, updates: int, clock: StepClock | None = None, first: int = 1) -> List[float]:
    """The initial lr, then the lr after each update `first`..`updates` (the clock ticks first)."""
    out = [schedule.optimizer.get_lr()]
    for u in range(first, updates + 1):
        if clock is not None:
            clock.now += clock.dt
        out.append(schedule.step_update(u))
    return out


@pytest.mark.parametrize("warmup,end", [(0, 0.0), (5, 0.0), (7, 1e-5)])
def test_without_a_time_budget_it_is_fairseqs_polynomial_decay(warmup: int, end: float) -> None:
    ours, theirs = budget(warmup, 40, 0.0, end), polynomial(warmup, 40, end)
    assert rates(ours, 45) == pytest.approx(rates(theirs, 45), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("updates_cap", [0, 10_000])
def test_a_time_budget_ends_the_decay_where_the_time_runs_out(updates_cap: int) -> None:
    """2 s per update and a budget of 100 s: warm-up ends at update 5 (10 s), the time runs out at
    update 50, so the schedule is polynomial_decay with total_num_update 50."""
    clock = StepClock(2.0)
    ours = budget(5, updates_cap, 100 / 3600, clock=clock)
    assert rates(ours, 60, clock) == pytest.approx(rates(polynomial(5, 50), 60), rel=1e-9, abs=1e-15)


def test_the_update_budget_wins_when_it_comes_first() -> None:
    clock = StepClock(2.0)
    ours = budget(5, 30, 100 / 3600, clock=clock)  # 30 updates come at 60 s, before the 100 s budget
    assert rates(ours, 35, clock) == pytest.approx(rates(polynomial(5, 30), 35), rel=1e-9, abs=1e-15)


def test_repeated_calls_at_the_end_of_the_warm_up_keep_the_line() -> None:
    """fairseq calls step_update(W) again at an epoch's end and start (after validation and saving):
    the line still starts where update W happened."""
    clock = StepClock(2.0)
    ours = budget(5, 0, 100 / 3600, clock=clock)
    head = rates(ours, 5, clock)
    clock.now += 7.0  # validation and a checkpoint, then the next epoch's begin
    ours.step_update(5)
    clock.now -= 7.0  # (compare on the plain line: the 7 s would shift the time fraction)
    assert head + rates(ours, 60, clock, first=6)[1:] == pytest.approx(rates(polynomial(5, 50), 60), rel=1e-9, abs=1e-15)


def test_a_resume_continues_the_same_line() -> None:
    """Stopped at update 20; a new scheduler loads the state, and the trainer's clock goes on from
    where it stopped (fairseq restores its previous_training_time)."""
    clock = StepClock(2.0)
    whole = rates(budget(5, 0, 100 / 3600, clock=clock), 60, clock)
    clock.now = 0.0
    first = budget(5, 0, 100 / 3600, clock=clock)
    head = rates(first, 20, clock)
    second = budget(5, 0, 100 / 3600, clock=clock)
    second.load_state_dict(first.state_dict())
    tail = rates(second, 60, clock, first=21)[1:]
    assert head + tail == pytest.approx(whole, rel=1e-9, abs=1e-15)


def test_fairseqs_trainer_hands_the_schedule_its_clock(toy_bin) -> None:
    """The scheduler fairseq's Trainer builds reads the trainer's cumulative training time, resumed
    time included (mhce_nmt.training.lr_scheduler.use_trainer_clock)."""
    import mhce_nmt  # noqa: F401
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(toy_bin), "--task", "translation_mhce", "--arch", "transformer_mhce_tiny", "--criterion",
        "mhce_cross_entropy", "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "linear_budget",
        "--budget-hours", "1", "--cpu", "--max-tokens", "3000"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    trainer = Trainer(cfg, task, task.build_model(cfg.model), task.build_criterion(cfg.criterion))
    trainer._previous_training_time = 1000.0  # as after a resume
    assert 1000.0 <= trainer.lr_scheduler.clock() <= trainer.cumulative_training_time()


def test_without_any_budget_it_is_refused() -> None:
    with pytest.raises(MHCEConfigError, match="give one of them"):
        budget(5, 0, 0.0)


def test_fairseq_train_with_a_time_budget_ends_at_the_end_learning_rate(cli, toy_bin, tmp_path) -> None:
    """fairseq-train stops at --stop-time-hours; the last logged lr is the end of the line (0).

    The 7.2 s budget gave only 34 updates on CI's slow machine and 9 on a 2-core machine busy with a
    training run, so the warm-up is 2 updates: the test needs only some updates on each side of the peak."""
    warmup = 2
    args = train_args(toy_bin, tmp_path / "ckpt", ["--lr-scheduler", "linear_budget", "--stop-time-hours", "0.002",
                                                   "--budget-hours", "0.002", "--log-interval", "1",
                                                   "--warmup-updates", str(warmup)], updates=100_000)
    proc = cli.run("fairseq_cli.train", args, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lrs = [float(v) for v in re.findall(r"train_inner .*? lr=([0-9.e+-]+)", proc.stdout + proc.stderr)]
    assert len(lrs) > warmup + 3 and lrs[warmup - 1] == pytest.approx(5e-3)  # up to the peak, then down
    assert lrs[-1] < 0.1 * 5e-3 and lrs == sorted(lrs[:warmup]) + sorted(lrs[warmup:], reverse=True)


def test_fairseq_train_without_a_budget_is_one_clear_line(cli, toy_bin, tmp_path) -> None:
    args = train_args(toy_bin, tmp_path / "ckpt", ["--lr-scheduler", "linear_budget"])
    proc = cli.run("fairseq_cli.train", args, check=False)
    assert_one_clear_line(proc, "--lr-scheduler linear_budget decays to its end after --total-num-update N updates or "
                                "--budget-hours H hours of training: give one of them")
