"""A run planned in time (issue 19, item 1): ``SimCLRConfig.minutes`` and ``runs.budget``.

``pretrain`` runs for real (its loop, recorder, checkpoints, resume) on a FAKE CLOCK: ``train_step`` is replaced
by one that records the learning rate it was given, advances the fake clock by a chosen step time and steps the
schedule (and ``make_views`` by the images themselves), so a machine that slows down or speeds up mid-run is
simulated exactly and in well under a second of real time per run. The budget's clock is injected
(``pretrain(..., budget=TimeBudget(clock=...))``).
"""
import json

import pytest
import torch
import torch.nn.functional as F

from simclr_lib import SimCLRConfig, train
from simclr_lib.optim import warmup_cosine
from simclr_lib.runs.budget import BudgetLR, ReplannableCosine, TimeBudget
from simclr_lib.runs.checkpoint import load_checkpoint

BUDGET_S = 300.0  # fake seconds: 300 steps at 1 s/step


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: small problems on one thread


class FakeClock:
    """Fake seconds; ``train_step`` advances them by ``step_seconds(now)``, callbacks by what an epoch end costs."""

    def __init__(self, step_seconds):
        self.t, self.step_seconds, self.lrs = 1000.0, step_seconds, []

    def __call__(self):
        return self.t

    def train_step(self, model, views, optimizer, scaler, temperature=0.5, n_views=2, dtype=None, scheduler=None):
        self.lrs.append(optimizer.param_groups[0]["lr"])  # the learning rate this step trains with
        self.t += self.step_seconds(self.t - 1000.0)
        optimizer.step()  # (no gradients: a no-op that keeps the scheduler from warning)
        scheduler.step()
        return torch.tensor(4.0), F.normalize(torch.randn(views.shape[0], 8), dim=1)


def config(out, minutes=BUDGET_S / 60, **kw):
    """The smoke preset, 16 steps an epoch, no kNN monitor: at most 40 epochs (640 steps) in ``minutes``."""
    base = dict(out_dir=str(out), subset=256, batch_size=16, epochs=40, warmup_epochs=1, knn_every=0,
                checkpoint_every=4, tensorboard=False, device="cpu", minutes=minutes)
    return SimCLRConfig.smoke(**dict(base, **kw))


def fake_loop(monkeypatch, clock):
    """The fake step, and views that are the images themselves (augmenting them is not what is tested here)."""
    monkeypatch.setattr(train, "train_step", clock.train_step)
    monkeypatch.setattr(train, "make_views", lambda images, *args: images)


def budgeted(tmp_path, monkeypatch, step_seconds, callbacks=(), resume=False, clock=None, **kw):
    """A budgeted pretrain on the fake clock; returns (result, clock)."""
    clock = clock or FakeClock(step_seconds)
    fake_loop(monkeypatch, clock)
    cfg = config(tmp_path / "run", **kw)
    result = train.pretrain(cfg, budget=TimeBudget(clock=clock), callbacks=callbacks, resume=resume)
    return result, clock


def saved_replans(result):
    """The re-plans metrics.json records: step, seconds used, seconds per step measured, planned steps."""
    return json.loads((result.out_dir / "metrics.json").read_text())["replans"]


def assert_ends_inside_with_schedule_done(result, clock, lowest=0.95):
    b = result.metrics["budget"]
    peak = result.config.peak_lr()
    assert lowest * BUDGET_S <= clock.t - 1000.0 <= BUDGET_S, (clock.t - 1000.0, b["steps"])
    assert b["ended"] == "schedule complete" and b["steps"] == b["planned_steps"] == len(clock.lrs)
    assert clock.lrs[-1] < 1e-3 * peak  # the last step trains at the end of the cosine
    assert result.history[-1]["lr"] < 1e-9 * peak  # and the schedule is at 0 after it
    assert max(clock.lrs) > 0.95 * peak  # (the warm-up reached the peak)


def test_the_schedule_never_replanned_is_warmup_cosine_bit_for_bit():
    s = ReplannableCosine(500, 37)
    assert all(s(i) == warmup_cosine(i, 500, 37) for i in range(520))


def test_a_replan_keeps_the_lr_and_ends_the_cosine_at_the_new_plan():
    s = ReplannableCosine(500, 20)
    before = s(200)
    s.replan(200, 260)  # the machine slowed down: 60 steps left instead of 300
    assert s(200) == pytest.approx(before, abs=1e-12)
    lrs = [s(i) for i in range(200, 261)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # still decreasing, no jump
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and s(259) < 1e-2
    s.replan(230, 400)  # then faster: the rest of the cosine spreads over more steps
    assert s(399) > 0 and s(400) == pytest.approx(0.0, abs=1e-12)
    s.replan(100, 90)  # a plan before the current step is the current step (time up)
    assert s.planned == 100


def test_constant_speed_uses_the_budget_and_completes_the_cosine(tmp_path, monkeypatch):
    result, clock = budgeted(tmp_path, monkeypatch, lambda t: 1.0)
    assert_ends_inside_with_schedule_done(result, clock, lowest=0.99)
    replans = saved_replans(result)
    assert set(replans["planned_steps"]) == {300 - 2}  # 1 s/step measured at every re-plan (2 steps of margin)
    assert set(replans["seconds_per_step"]) == {1.0} and replans["step"][:3] == [10, 16, 26]  # every logging sync
    assert result.metrics["budget"]["replans"] == len(replans["step"])


def test_a_machine_that_slows_down_ends_inside_the_budget_with_the_cosine_done(tmp_path, monkeypatch):
    result, clock = budgeted(tmp_path, monkeypatch, lambda t: 1.0 if t < 100 else 3.0)
    assert_ends_inside_with_schedule_done(result, clock)
    assert 100 + 60 <= len(clock.lrs) <= 100 + 67  # ~100 steps at 1 s, then ~66 at 3 s
    planned = saved_replans(result)["planned_steps"]
    assert planned[0] == 298 and planned[-1] == len(clock.lrs)


def test_a_machine_that_speeds_up_uses_the_extra_time(tmp_path, monkeypatch):
    result, clock = budgeted(tmp_path, monkeypatch, lambda t: 1.0 if t < 100 else 0.5)
    assert_ends_inside_with_schedule_done(result, clock, lowest=0.98)
    assert len(clock.lrs) >= 100 + 390  # not 300: the 200 s left hold 400 steps
    assert result.metrics["budget"]["epochs"] > 30


def test_a_sudden_late_slowdown_stops_at_the_budget_mid_epoch(tmp_path, monkeypatch):
    result, clock = budgeted(tmp_path, monkeypatch, lambda t: 1.0 if t < 250 else 10.0)  # 10x, 6 steps from a sync
    b = result.metrics["budget"]
    assert clock.t - 1000.0 == BUDGET_S and b["ended"] == "time up"  # the next step would have ended past it
    assert b["steps"] == len(clock.lrs) == 255 and b["steps"] % 16  # mid-epoch
    assert result.history[-1]["step"] == 255  # its epoch end (and checkpoint) still ran


def test_noisy_step_times_and_costly_epoch_ends_stay_inside(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(0)

    def epoch_end(record):  # every epoch's end costs 4 fake seconds (a kNN monitor, a checkpoint)
        clock.t += 4.0

    clock = FakeClock(lambda t: float(0.5 + 1.5 * torch.rand((), generator=gen)))
    result, _ = budgeted(tmp_path, monkeypatch, None, callbacks=[epoch_end], clock=clock)
    assert_ends_inside_with_schedule_done(result, clock, lowest=0.9)


def test_the_cap_on_epochs_ends_the_cosine_early_rather_than_overrun_it(tmp_path, monkeypatch):
    result, clock = budgeted(tmp_path, monkeypatch, lambda t: 0.1, epochs=5)  # 80 steps fit 8 s
    b = result.metrics["budget"]
    assert b["steps"] == 80 == b["max_steps"] and b["ended"] == "schedule complete"
    assert clock.lrs[-1] < 1e-2 * result.config.peak_lr()


def test_a_resumed_budgeted_run_continues_its_schedule_exactly(tmp_path, monkeypatch):
    whole, whole_clock = budgeted(tmp_path / "a", monkeypatch, lambda t: 1.0 if t < 100 else 2.0)
    stop = lambda record: record["epoch"] == 8  # noqa: E731 (killed after epoch 8: its checkpoint is kept)
    first, clock = budgeted(tmp_path / "b", monkeypatch, lambda t: 1.0 if t < 100 else 2.0, callbacks=[stop])
    ckpt = load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 128 and ckpt["scheduler"]["budget"]["seconds_used"] == pytest.approx(128 + 28)
    clock.t += 500.0  # the process was down for a while: that time is not the run's
    resumed, _ = budgeted(tmp_path / "b", monkeypatch, None, resume=True, clock=clock)
    assert clock.lrs == whole_clock.lrs  # every step trained with the same learning rate
    assert saved_replans(resumed) == saved_replans(whole)
    assert [r["step"] for r in resumed.history] == [r["step"] for r in whole.history]


def test_resuming_a_run_that_used_its_budget_trains_nothing(tmp_path, monkeypatch):
    _, clock = budgeted(tmp_path, monkeypatch, lambda t: 1.0)
    steps = len(clock.lrs)
    result, _ = budgeted(tmp_path, monkeypatch, None, resume=True, clock=clock)
    assert len(clock.lrs) == steps and result.metrics["step"] == steps


def test_a_budget_state_survives_a_weights_only_checkpoint(tmp_path):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    clock = FakeClock(None)
    sched = TimeBudget(clock=clock).scheduler(opt, 60.0, 1000, 10, 16)
    sched.budget.start(0)
    for step in range(1, 31):
        clock.t += 0.5
        opt.step()
        sched.step()
        if step % 10 == 0:
            sched.budget.replan(step)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    again = TimeBudget(clock=clock).scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                                              60.0, 1000, 10, 16)
    again.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert isinstance(again, BudgetLR)
    assert again.budget.planned == sched.budget.planned == 30 + 90 - 2  # 45 s left at 0.5 s, less the margin
    assert again.budget.used() == pytest.approx(15.0) and again.budget.log == sched.budget.log
    assert again.lr_lambdas[0](50) == sched.lr_lambdas[0](50) and again.last_epoch == 30


def test_without_minutes_the_run_is_epoch_planned_as_before(tmp_path, monkeypatch):
    clock = FakeClock(lambda t: 1.0)
    fake_loop(monkeypatch, clock)
    result = train.pretrain(config(tmp_path / "run", minutes=None, epochs=3))
    assert "budget" not in result.metrics and len(clock.lrs) == 48
    assert clock.lrs == [result.config.peak_lr() * warmup_cosine(i, 48, 16) for i in range(48)]
    with pytest.raises(ValueError, match="minutes"):
        SimCLRConfig.smoke(minutes=0.0)
    with pytest.raises(ValueError, match="needs cfg.minutes"):
        train.setup_run(config(tmp_path / "x", minutes=None), budget=TimeBudget())


def _replans_with_one_slow_window(after_s):
    """A TimeBudget on a fake clock: 1 s steps (the reference), re-planned every 10 steps, one 10-step window at
    1.7 s/step (steps 151-160), then 1 s steps again; returns the plan at step 170 and the plan at step 150."""
    t = [0.0]
    budget = TimeBudget(clock=lambda: t[0], after_s=after_s, reference_step_s=1.0)
    budget.scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), seconds=600.0,
                     max_steps=10_000, warmup_steps=0, steps_per_epoch=10_000)
    budget.start(0)
    before = None
    for step in range(10, 180, 10):
        t[0] += 10 * (1.7 if step == 160 else 1.0)
        planned = budget.replan(step)
        before = planned if step == 150 else before
    return planned, before


def test_one_noisy_window_does_not_scale_the_reserve_after_training():
    """after_s is scaled by the median of the last re-plans' step times: one 10-step window at 1.7x (noise on a
    shared machine) costs that window's lost time only. Before the median the 300 s reserve became 510 s at that
    window, the time was up at step 160 and the run ended there (a quickstart with one core busy at its start
    stopped at 63 % of its budget)."""
    planned, before = _replans_with_one_slow_window(after_s=300.0)
    assert before == 600 - 300 - 2  # the plan at the reference speed: budget - after_s - MARGIN_STEPS
    assert planned == before - 7  # the slow window cost 7 s of steps, not 210 s
    steady, _ = _replans_with_one_slow_window(after_s=0.0)
    assert steady >= 590


def test_a_lasting_slowdown_still_scales_the_reserve():
    """Three re-plans in a row at 2x (a majority of the last five) scale after_s by 2."""
    t = [0.0]
    budget = TimeBudget(clock=lambda: t[0], after_s=100.0, reference_step_s=1.0)
    budget.scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), seconds=600.0,
                     max_steps=10_000, warmup_steps=0, steps_per_epoch=10_000)
    budget.start(0)
    for step in range(10, 60, 10):
        t[0] += 10 * (2.0 if step > 20 else 1.0)
        budget.replan(step)
    assert budget.slowdown() == 2.0
    assert budget.planned == 50 + (600 - 80 - 200 - 4) // 2  # left: 600 - 80 used - 2 x 100 - 2 steps of 2 s
