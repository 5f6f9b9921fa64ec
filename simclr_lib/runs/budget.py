"""A run planned in time (``SimCLRConfig.minutes``): the warm-up + cosine follows the time used, and the run ends
inside its budget with its cosine complete, whether the machine gets slower or faster while it trains.

:class:`TimeBudget` re-plans the run's last step at every logging sync of the recorder (every ``LOG_EVERY`` steps,
the syncs the step loop already has): it measures the seconds per step since the last sync, and plans as many
steps as fit before the deadline, after the epoch ends on the way (kNN monitor, checkpoint; measured too) and the
work the caller keeps for after training (``after_s``, scaled by the step's slowdown). :class:`ReplannableCosine`
is the schedule: each re-plan keeps the learning rate where it is and spreads the rest of the cosine over the new
number of steps left, so the curve stays continuous and reaches 0 at the planned last step. The progress of the
cosine therefore tracks the fraction of the budget used. A plan keeps ``MARGIN_STEPS`` steps of room for noise;
between re-plans each step reads the host clock (no device sync), and when one more step would end past the
budget the run stops there ("time up", mid-epoch if need be: a sudden slowdown costs the cosine's tail, never the
budget).

:class:`BudgetLR` (a ``LambdaLR``) carries the budget: its state dict, and so the checkpoint, holds the schedule and
what was measured (seconds used, the re-plans), so a resumed run continues its schedule where it was, with the
time it has left. A run without ``minutes`` never builds any of this (it stays bit-exact).
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from simclr_lib.config import SimCLRConfig
from simclr_lib.distributed import is_distributed

LOG_COLUMNS = ("step", "seconds", "seconds_per_step", "planned_steps")  # one entry per re-plan
MARGIN_STEPS = 2  # a plan ends this many steps (and one epoch end's spread) before time is up: room for noise
SLOWDOWN_WINDOWS = 5  # after_s is scaled by the median step of this many re-plans: one noisy window is no slowdown


class ReplannableCosine:
    """The warm-up + cosine of ``optim.warmup_cosine``, whose last step may be moved while the run trains.

    ``replan(step, planned)`` anchors the cosine's progress at ``step`` and spreads what is left of it over the steps
    up to ``planned``: the multiplier never jumps, and it reaches 0 at ``planned``. Never re-planned, it equals
    ``warmup_cosine(step, planned, warmup_steps)``. The linear warm-up stays ``warmup_steps`` long.
    Its attributes are plain numbers, which ``LambdaLR.state_dict`` saves.
    """

    def __init__(self, planned: int, warmup_steps: int) -> None:
        self.planned, self.warmup_steps = planned, warmup_steps
        self.anchor_step, self.anchor_progress = 0, 0.0

    def progress(self, step: int) -> float:
        """How much of the cosine is done at ``step``, in [0, 1] (0 during the warm-up)."""
        start = max(self.anchor_step, self.warmup_steps)
        if step <= start:
            return self.anchor_progress
        done = (1.0 - self.anchor_progress) * (step - start) / max(1, self.planned - start)
        return min(1.0, self.anchor_progress + done)

    def __call__(self, step: int) -> float:
        """The learning-rate multiplier at ``step``: linear warm-up, then the cosine at its progress."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return 0.5 * (1.0 + math.cos(math.pi * self.progress(step)))

    def replan(self, step: int, planned: int) -> None:
        """From ``step`` on, the rest of the cosine ends at ``planned`` (>= ``step``)."""
        self.anchor_progress, self.anchor_step, self.planned = self.progress(step), step, max(planned, step)


class TimeBudget:
    """The clock and plan of a budgeted run; ``pretrain(cfg, budget=...)`` takes one, ``cfg.minutes`` its length.

    Args:
        clock: seconds, monotonic (``time.perf_counter``; a test's fake clock).
        after_s: seconds of work the caller does after training (e.g. the quickstart's probes), kept free at the
            end of the budget; measured at ``reference_step_s`` and scaled by the step's slowdown since.
        reference_step_s: seconds per step expected (e.g. calibrated): the first plan, before any measurement.
        epoch_end_s: seconds an epoch's end is expected to take (kNN monitor, checkpoint) until one is measured.
        max_slowdown: ``after_s`` is scaled by at most this much.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter, after_s: float = 0.0,
                 reference_step_s: Optional[float] = None, epoch_end_s: float = 0.0, max_slowdown: float = 3.0):
        self.clock, self.after_s, self.reference_step_s = clock, after_s, reference_step_s
        self.epoch_end_s, self.max_slowdown = epoch_end_s, max_slowdown
        self.seconds, self.max_steps, self.steps_per_epoch = 0.0, 0, 1
        self.schedule = ReplannableCosine(0, 0)
        self.device: Optional[torch.device] = None
        self.step_s = reference_step_s  # seconds per step, measured at the last re-plan
        self.end_s: list[float] = []  # seconds of each epoch end measured
        self.used_before = 0.0  # seconds used before this process started (a resumed run)
        self.log: dict[str, list] = {k: [] for k in LOG_COLUMNS}
        self.start_t: Optional[float] = None
        self.window = (0.0, 0)  # (clock, step) of the last re-plan or epoch start
        self.tick, self.last_step_s = (0.0, 0), 0.0  # (clock, step) of the last step seen by done(), its seconds
        self.end_t0: Optional[float] = None

    def scheduler(self, optimizer: torch.optim.Optimizer, seconds: float, max_steps: int, warmup_steps: int,
                  steps_per_epoch: int, device: Optional[torch.device] = None) -> "BudgetLR":
        """Bind the budget to a run: ``seconds`` of training, at most ``max_steps``; returns its scheduler."""
        self.seconds, self.max_steps, self.steps_per_epoch, self.device = seconds, max_steps, steps_per_epoch, device
        if self.step_s is None:
            first = max_steps
        else:  # (not started yet: end_of_steps is the seconds the steps may take)
            first = min(max_steps, self.steps_that_fit(self.end_of_steps(self.after_s) - self.margin()))
        self.schedule = ReplannableCosine(max(1, first), warmup_steps)
        return BudgetLR(optimizer, self)

    @property
    def planned(self) -> int:
        """The run's planned last step (the number of optimiser steps it will have made)."""
        return self.schedule.planned

    def done(self, step: int) -> bool:
        """The run has made its planned steps (its cosine complete), or its time is up.

        Time is up when one more step (as long as the last one, on the host clock: no device sync) would end
        past the budget less the work after the steps (the last epoch end, ``after_s``): a slowdown since the last
        re-plan stops the run there, mid-epoch if need be, and the plan ends at that step.
        """
        if step >= self.planned:
            return True
        if self.start_t is None or is_distributed():  # (under torchrun only the re-plans, which all share, stop)
            return False
        now, (t, s) = self.clock(), self.tick
        if step > s:
            self.tick, self.last_step_s = (now, step), (now - t) / (step - s)
        if now + self.last_step_s <= self.end_of_steps(self.after_s):
            return False
        self._set_plan(step, step)
        return True

    def end_of_steps(self, after_s: float) -> float:
        """The clock time by which the steps must be done: the budget's end less the last epoch end and
        ``after_s``."""
        last_end = max(self.end_s + [self.epoch_end_s])
        return (self.start_t or 0.0) + self.seconds - self.used_before - last_end - after_s

    def used(self) -> float:
        """Seconds of the budget used so far (a resumed run's earlier ones included)."""
        return self.used_before + (0.0 if self.start_t is None else self.clock() - self.start_t)

    def start(self, step: int) -> None:
        """The training loop starts (or resumes) at ``step``: the clock runs from now."""
        self.start_t = self.clock()
        self.window = self.tick = (self.start_t, step)
        self.end_t0 = None

    def epoch_ended(self) -> None:
        """An epoch's steps are done; its end (kNN monitor, checkpoint) runs until :meth:`epoch_started`."""
        self.end_t0 = self.clock()

    def epoch_started(self, step: int) -> None:
        """A new epoch starts at ``step``: the last epoch end is measured, the step timing restarts."""
        now = self.clock()
        if self.end_t0 is not None:
            self.end_s.append(now - self.end_t0)
            self.end_t0 = None
        self.window = self.tick = (now, step)

    def slowdown(self) -> float:
        """The step's slowdown against ``reference_step_s`` (1 without one), in [1, ``max_slowdown``]: the median
        step of the last ``SLOWDOWN_WINDOWS`` re-plans (this one included) over the reference."""
        if self.reference_step_s is None or self.step_s is None:
            return 1.0
        step_s = statistics.median_high(self.log["seconds_per_step"][-(SLOWDOWN_WINDOWS - 1):] + [self.step_s])
        return min(max(1.0, step_s / self.reference_step_s), self.max_slowdown)

    def margin(self) -> float:
        """Seconds a plan keeps before time is up: ``MARGIN_STEPS`` steps and the spread of the epoch ends (the
        slowest measured less the mean), so that noise since the last re-plan does not stop the run early."""
        ends = self.end_s or [self.epoch_end_s]
        return MARGIN_STEPS * self.step_s + max(ends) - sum(ends) / len(ends)

    def steps_that_fit(self, left_s: float) -> int:
        """Steps that fit in ``left_s`` seconds with the epoch ends on the way (the last one is not in it; >= 0)."""
        ends = self.end_s or [self.epoch_end_s]
        per_step = self.step_s + sum(ends) / len(ends) / self.steps_per_epoch
        return max(0, math.floor(left_s / per_step)) if per_step > 0 else self.max_steps

    def replan(self, step: int) -> int:
        """At a logging sync after ``step`` steps: measure the step, plan the last step; returns the plan.

        The seconds per step are those since the last re-plan or epoch start; the steps planned are those that
        fit before the deadline (never past ``max_steps``; none when the time is up). Under torchrun every process
        takes rank 0's plan. Once the plan is reached it is final.
        """
        if self.done(step):
            return self.planned
        now = self.clock()
        if step <= self.window[1]:  # (no step since the last re-plan: nothing to measure)
            return self.planned
        t, s = self.window
        self.step_s, self.window = (now - t) / (step - s), (now, step)
        left = self.end_of_steps(self.after_s * self.slowdown()) - now - self.margin()
        self._set_plan(step, _from_rank0(min(self.max_steps, step + self.steps_that_fit(left)), self.device))
        return self.planned

    def _set_plan(self, step: int, planned: int) -> None:
        """The rest of the cosine ends at ``planned``; the re-plan is logged."""
        self.schedule.replan(step, planned)
        for k, v in zip(LOG_COLUMNS, (step, round(self.used(), 3), self.step_s, self.planned)):
            self.log[k].append(v)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (plain numbers and lists): seconds used, the measurements, the re-plans."""
        return dict(seconds_used=self.used(), step_s=self.step_s, end_s=list(self.end_s),
                    log={k: list(v) for k, v in self.log.items()})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a checkpoint's budget: its seconds are used, its measurements and re-plans kept."""
        self.used_before, self.step_s = float(state["seconds_used"]), state["step_s"]
        self.end_s, self.log = list(state["end_s"]), {k: list(v) for k, v in state["log"].items()}

    def summary(self, step: int) -> dict[str, Any]:
        """The budget and what was run, for metrics.json (``log`` holds every re-plan)."""
        ended = ("schedule complete" if self.schedule.progress(step) >= 1.0 else
                 "time up" if step >= self.planned else "stopped early")
        return dict(minutes=self.seconds / 60, seconds_used=self.used(), steps=step,
                    epochs=step / self.steps_per_epoch, planned_steps=self.planned, max_steps=self.max_steps,
                    replans=len(self.log["step"]), ended=ended)


class BudgetLR(torch.optim.lr_scheduler.LambdaLR):
    """The scheduler of a budgeted run: a ``LambdaLR`` of ``budget.schedule`` whose state dict (and so the
    checkpoint) also holds the budget's."""

    def __init__(self, optimizer: torch.optim.Optimizer, budget: TimeBudget) -> None:
        self.budget = budget
        super().__init__(optimizer, budget.schedule)

    def state_dict(self) -> dict[str, Any]:
        """``LambdaLR``'s state (the schedule's numbers included) and the budget's."""
        return dict(super().state_dict(), budget=self.budget.state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore both."""
        state = dict(state_dict)
        self.budget.load_state_dict(state.pop("budget"))
        super().load_state_dict(state)


def time_scheduler(optimizer: torch.optim.Optimizer, cfg: SimCLRConfig, steps_per_epoch: int, device: torch.device,
                   budget: Optional[TimeBudget] = None) -> BudgetLR:
    """The scheduler of a run with ``cfg.minutes``: at most ``cfg.epochs`` epochs, the warm-up of the config."""
    if cfg.minutes is None:
        raise ValueError("a TimeBudget needs cfg.minutes, the length of the budget (e.g. cfg.replace(minutes=5))")
    return (budget or TimeBudget()).scheduler(optimizer, 60 * cfg.minutes, cfg.epochs * steps_per_epoch,
                                              round(cfg.warmup_epochs * steps_per_epoch), steps_per_epoch, device)


def _from_rank0(value: int, device: Optional[torch.device]) -> int:
    """Rank 0's ``value`` in every process (itself outside torchrun): all processes stop at the same step."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.broadcast(t, 0)
    return int(t.item())
