"""The quickstart on a time budget (issue 19, item 2): the smoke preset on `shapes` with a FAKE SLOW STEP.

``train.train_step`` is replaced by a ``time.sleep`` of a chosen length that steps the schedule as the real step does
(the calibration and ``pretrain`` both call it), so the step time is known and may change mid-run; the random-init /
trained probe + t-SNE (``Side.measure``) and the kNN monitor are replaced by fixed sleeps too, the views by the
images themselves and the figure by an empty file, so the only real work left (checkpoints, metrics.json) is small
and a loaded CI machine cannot change what is tested. One torch
thread: on 2 shared cores two threads per process made everything 10-40x slower in our measurements.

The run is planned in time (``runs.budget``, tested on a fake clock in tests/test_budget.py): each budgeted run
here must end inside its budget, use at least 85 % of it, and end its cosine (LR ~ 0) at its last step.
"""
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simclr_lib import SimCLRConfig, train
from simclr_lib.cli import commands as main_module
from simclr_lib.cli import quickstart as Q
from simclr_lib.runs import recorder

SIDE_SECONDS = 0.3  # the fake probe + t-SNE of one side
MINUTES = 0.15  # 9 s budgets


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: small problems on one thread


def fake_step(seconds, lrs=None):
    """A train_step that sleeps ``seconds()``, steps the schedule (noting the LR it trained with in ``lrs``) and
    returns a finite loss and unit-norm z of the right shape."""
    def step(model, views, optimizer, scaler, temperature=0.5, n_views=2, dtype=None, scheduler=None):
        if lrs is not None and hasattr(scheduler, "budget"):  # pretrain's steps (the calibration's have no budget)
            lrs.append(optimizer.param_groups[0]["lr"])
        time.sleep(seconds())
        optimizer.step()  # (no gradients: a no-op that keeps the scheduler from warning)
        scheduler.step()
        return torch.tensor(4.0), F.normalize(torch.randn(views.shape[0], 8), dim=1)
    return step


def fake_measure(seconds=lambda: SIDE_SECONDS):
    def measure(model, train_data, test_data, n_plot, C=1.0):
        s = seconds()
        time.sleep(s)
        result = dict(top1=0.5, seconds=s / 2, n_train=len(train_data), C=C, iterations=1)
        return Q.Side(result, np.zeros((n_plot, 2), np.float32), s, 1e-5)
    return staticmethod(measure)


def patch(mp, step_seconds, side_seconds=lambda: SIDE_SECONDS, lrs=None):
    mp.setattr(train, "train_step", fake_step(step_seconds, lrs))
    for module in (train, Q):  # views are the images themselves: augmenting them is not what is tested here
        mp.setattr(module, "make_views", lambda images, *args: images)
    mp.setattr(recorder, "knn_monitor", lambda *a: 0.0)
    mp.setattr(Q.Side, "measure", fake_measure(side_seconds))
    mp.setattr(Q, "side_by_side", lambda *a, **kw: None)
    mp.setattr(Q, "save_figure", fake_figure)


def fake_figure(fig, path):
    """The figure's file, empty (drawing it takes 0.1-1 s of real work on a loaded machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def quickstart(out, minutes=None, epochs=None):
    """A smoke quickstart on shapes; returns (metrics, wall seconds)."""
    t0 = time.perf_counter()
    m = Q.run_quickstart(str(out), device="cpu", smoke=True, dataset="shapes", progress=False, minutes=minutes,
                         epochs=epochs)
    return m, time.perf_counter() - t0


def budgeted(tmp_path_factory, step_seconds, minutes=MINUTES, **kw):
    """A budgeted run with a step of ``step_seconds()``; returns (metrics, wall seconds, stdout)."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        patch(mp, step_seconds, **kw)
        m, wall = quickstart(tmp_path_factory.mktemp("qs") / "run", minutes=minutes)
    return m, wall, out.getvalue()


def assert_used_85_to_100_percent_with_the_cosine_done(m, wall, lrs=None):
    budget = 60 * m["budget_minutes"]
    assert 0.85 * budget <= m["total_seconds"] <= wall <= budget, (m["total_seconds"], wall, budget)
    assert m["schedule"]["ended"] == "schedule complete", m["schedule"]
    peak = SimCLRConfig.from_dict(m["config"]).peak_lr()
    assert m["final_lr"] < 1e-6 * peak  # the schedule is at the end of its cosine
    if lrs is not None:  # and the last step trained with ~0
        assert len(lrs) == m["steps_run"] and lrs[-1] < 0.02 * peak


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    return budgeted(tmp_path_factory, lambda: 0.04)


def plan_lines(text):
    return [line for line in text.splitlines() if "s/step measured" in line]


def test_a_budgeted_run_uses_its_budget_and_ends_its_cosine(fast):
    m, wall, _ = fast
    assert_used_85_to_100_percent_with_the_cosine_done(m, wall)
    assert m["plan"]["steps"] >= 60 and m["steps_run"] >= 0.8 * m["plan"]["steps"]
    assert m["epochs"] == m["steps_run"] / 4
    assert m["config"]["minutes"] == pytest.approx(m["plan"]["train_seconds"] / 60)
    replans = m["schedule"]["replans"]
    assert len(replans["planned_steps"]) >= m["steps_run"] // 4 - 1  # re-planned at every logging sync (4-step epochs)
    assert all(0.03 < s < 0.2 for s in replans["seconds_per_step"])
    load = m["load_average"]
    assert (load["start"] is None) == (load["end"] is None) == (not Path("/proc/loadavg").exists())


def test_a_3x_slower_step_trains_a_third_of_the_steps_in_the_same_budget(fast, tmp_path_factory):
    (m1, _, _), (m3, wall3, _) = fast, budgeted(tmp_path_factory, lambda: 0.12)
    assert 2.4 < m3["seconds_per_step"] / m1["seconds_per_step"] < 3.2
    # fewer steps in the same time: about a third, more with the fixed cost of each (4-step) epoch's end
    assert 0.22 < m3["steps_run"] / m1["steps_run"] < 0.6, (m1["steps_run"], m3["steps_run"])
    assert_used_85_to_100_percent_with_the_cosine_done(m3, wall3)


def test_plan_line_printed_once_and_recorded(fast):
    m, _, out = fast
    lines = plan_lines(out)
    assert len(lines) == 1, lines
    assert f"-> {m['plan']['steps']} steps planned" in lines[0] and "of 4 steps on 256 images" in lines[0]
    assert "to fit 0.15 min" in lines[0] and "re-planned every 10 steps" in lines[0]
    assert out.index(lines[0]) < out.index("quickstart: linear probe")  # before training, not at the end
    saved = json.loads((Path(m["tsne_figure"]).parent / "metrics.json").read_text())
    assert saved["plan"]["line"] == lines[0]
    for key in ("budget_minutes", "planned_epochs", "steps_run", "epochs", "seconds_per_step", "total_seconds",
                "schedule", "load_average", "final_lr", "sides"):
        assert saved[key] == m[key] and saved[key] is not None
    for side in ("random", "trained"):  # what each side cost, beside the reserve the plan kept for the trained one
        cost = saved["sides"][side]
        assert 0 < cost["probe_seconds"] < cost["seconds"] < saved["total_seconds"] and cost["probe_iterations"] >= 1


def slowing_then(factor, after_calls=20):
    """A step of 0.04 s in the calibration and the first ``after_calls`` training steps, ``factor`` x after."""
    phase = dict(training=False, calls=0)

    def step_seconds():
        phase["calls"] += phase["training"]
        return 0.04 * (factor if phase["calls"] > after_calls else 1.0)

    real_pretrain = Q.pretrain

    def pretrain(*args, **kwargs):
        phase["training"] = True
        return real_pretrain(*args, **kwargs)
    return phase, step_seconds, pretrain


def test_a_step_slowing_mid_run_re_plans_and_ends_inside_the_budget(tmp_path, monkeypatch, capsys):
    phase, step_seconds, pretrain = slowing_then(4.0)
    lrs = []
    patch(monkeypatch, step_seconds, lrs=lrs,
          side_seconds=lambda: 3 * SIDE_SECONDS if phase["training"] else SIDE_SECONDS)  # a slower probe too
    monkeypatch.setattr(Q, "pretrain", pretrain)
    m, wall = quickstart(tmp_path / "run", minutes=MINUTES)
    assert_used_85_to_100_percent_with_the_cosine_done(m, wall, lrs)
    assert m["steps_run"] < 0.5 * m["plan"]["steps"]  # 4x slower after 20 steps: far fewer than planned
    assert len(plan_lines(capsys.readouterr().out)) == 1


def test_a_step_speeding_up_mid_run_uses_the_extra_time(tmp_path, monkeypatch):
    phase, step_seconds, pretrain = slowing_then(0.25, after_calls=10)
    lrs = []
    patch(monkeypatch, lambda: 3 * step_seconds(), lrs=lrs)  # 0.12 s, then 0.03 s
    monkeypatch.setattr(Q, "pretrain", pretrain)
    m, wall = quickstart(tmp_path / "run", minutes=MINUTES)
    assert_used_85_to_100_percent_with_the_cosine_done(m, wall, lrs)
    assert m["steps_run"] > 1.6 * m["plan"]["steps"]  # 4x faster after 10 steps: not stopped at the first plan


def test_epochs_override_the_budget(tmp_path, capsys, monkeypatch):
    patch(monkeypatch, lambda: 0.01)
    monkeypatch.setattr(Q, "calibrate", lambda *a: pytest.fail("calibrated although --epochs was given"))
    m, _ = quickstart(tmp_path / "run", minutes=0.01, epochs=3)  # 0.6 s could not hold 3 epochs + the reserve
    assert m["epochs_run"] == m["planned_epochs"] == 3 and m["steps_run"] == 12 and m["budget_minutes"] is None
    assert m["config"]["minutes"] is None and m["schedule"] is None and m["plan"] is None
    assert not plan_lines(capsys.readouterr().out)
    assert Q.budget_minutes(smoke=False, epochs=None, minutes=None) == Q.DEFAULT_MINUTES
    assert Q.budget_minutes(smoke=True, epochs=None, minutes=None) is None
    assert Q.budget_minutes(smoke=False, epochs=5, minutes=3.0) is None

    seen = {}
    monkeypatch.setattr(Q, "run_quickstart", lambda *a, **kw: seen.update(kw))
    assert main_module.main(["quickstart", "--epochs", "4", "--minutes", "2"]) == 0
    assert seen["epochs"] == 4 and seen["minutes"] == 2.0
    assert main_module.main(["quickstart"]) == 0 and seen["minutes"] is None and seen["epochs"] is None


def test_the_plan_caps_epochs_and_warm_up_and_keeps_the_post_training_work():
    baseline = Q.Side(dict(top1=0.1, seconds=2.0), np.zeros((1, 2)), 10.0, 1e-4)  # post: 10 + 0.5 * 2 = 11 s
    cfg = SimCLRConfig.quick(dataset="shapes")
    plan = Q.make_plan(cfg, 600.0, 30.0, (0.4, 0.1, 2.0), 10000, baseline, 4000)
    assert plan.post_s == 11.0 and plan.slack_s == 18.0 and plan.train_s == 600 - 30 - 2 - 18
    assert plan.epoch_end_s == pytest.approx(0.5) and plan.steps_per_epoch == 39
    assert plan.steps == int((plan.train_s - 11.0 - 0.5 - 2 * 0.4) / (0.4 + 0.5 / 39))  # the budget's first plan
    budget = plan.budget()
    assert budget.after_s == 11.0 and budget.reference_step_s == 0.4 and budget.max_slowdown == Q.MAX_SLOWDOWN
    sched = budget.scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), plan.train_s,
                             10 ** 6, 39, 39)
    assert sched.budget.planned == plan.steps


def test_budget_too_short_is_one_line_naming_minutes(tmp_path, capsys, monkeypatch):
    patch(monkeypatch, lambda: 0.05)
    out = tmp_path / "run"
    code = main_module.main(["quickstart", "--smoke", "--dataset", "shapes", "--device", "cpu", "--out", str(out),
                             "--minutes", "0.02"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # (and progress bars)
    assert code == 2 and len(errors) == 1 and errors[0].startswith("python -m simclr_lib quickstart: error: ")
    assert "--minutes 0.02 is too short" in errors[0] and "give --minutes" in errors[0]
    assert not (out / "checkpoints").exists()  # stopped before training


def test_the_quickstart_trains_its_recipe_chosen_at_equal_time():
    """The 10-minute run is the width-16 encoder at batch 64 on all the training images (QUICKSTART_RECIPE, chosen
    on a validation split by benchmarks/sweep_quickstart_recipe.py), with the quick preset's tau, lr and crops."""
    from simclr_lib.config import QUICKSTART_RECIPE, build_model

    cfg = Q.quickstart_config("cifar10", smoke=False, epochs=None, seed=3)
    quick = SimCLRConfig.quick()
    assert (cfg.small_width, cfg.batch_size, cfg.subset, cfg.seed) == (16, 64, None, 3)
    assert build_model(cfg).feat_dim == 1024  # h widened by the 1x1 conv (small_feat_dim)
    assert (cfg.image_size, cfg.view_size) == (32, 24)  # pre-trained on 24 px views of the 32 px images
    assert (cfg.temperature, cfg.peak_lr(), cfg.min_scale) == (quick.temperature, quick.peak_lr(), quick.min_scale)
    assert cfg.warmup_epochs * 50_000 == pytest.approx(10_000)  # a warm-up of 10,000 images
    assert {k: getattr(cfg, k) for k in QUICKSTART_RECIPE} == QUICKSTART_RECIPE
    assert Q.quickstart_config("cifar10", smoke=False, epochs=4).epochs == 4  # --epochs replaces the budget's cap
    assert Q.quickstart_config("shapes", smoke=True, epochs=None) == SimCLRConfig.smoke(dataset="shapes")


class _Stop(Exception):
    pass


@pytest.mark.parametrize("smoke, expected", [(False, (None, None)), (True, (256, 256))])
def test_the_probes_fit_every_training_label_as_the_paper_does(tmp_path, monkeypatch, smoke, expected):
    """The quickstart's probes (trained and random init) fit all the labelled training images and score all the
    test images (Sec. 3's linear evaluation; +1.3 points over the first 10,000 labels on the validation split);
    the smoke run keeps 256 of each."""
    seen = []

    def splits(cfg, n_train, n_test):
        seen.append((n_train, n_test))
        raise _Stop

    monkeypatch.setattr(Q, "load_pretrain_data", lambda cfg: None)
    monkeypatch.setattr(Q, "load_monitor_data", lambda cfg: None)
    monkeypatch.setattr(Q, "labelled_splits", splits)
    with pytest.raises(_Stop):
        Q.run_quickstart(str(tmp_path / "run"), device="cpu", smoke=smoke, dataset="shapes", progress=False)
    assert seen == [expected]


@pytest.mark.parametrize("smoke", [False, True])
def test_the_probe_uses_the_C_chosen_for_the_recipe(tmp_path, monkeypatch, smoke):
    """Both sides' probes use QUICKSTART_PROBE_C (chosen on the validation split for the recipe's 1,024-d h; the
    smoke run keeps C = 1); the random-init side is measured first, so its call is the one seen here."""
    from simclr_lib.config import QUICKSTART_PROBE_C

    seen = []

    def frozen(model, train_, test, scores, C):
        seen.append((model.feat_dim, C))
        raise _Stop

    monkeypatch.setattr(Q, "load_pretrain_data", lambda cfg: None)
    monkeypatch.setattr(Q, "load_monitor_data", lambda cfg: None)
    monkeypatch.setattr(Q, "labelled_splits", lambda cfg, n_train, n_test: (None, [0] * 5))
    monkeypatch.setattr(Q, "evaluate_frozen", frozen)
    with pytest.raises(_Stop):
        Q.run_quickstart(str(tmp_path / "run"), device="cpu", smoke=smoke, dataset="shapes", progress=False)
    assert seen == ([(SimCLRConfig.smoke().small_width * 8, 1.0)] if smoke else [(1024, QUICKSTART_PROBE_C)])
    assert QUICKSTART_PROBE_C == 0.01


def test_labelled_splits_none_means_the_whole_split():
    from simclr_lib.config import labelled_splits
    from simclr_lib.data import SHAPES_SIZES

    train_, test = labelled_splits(SimCLRConfig.smoke(dataset="shapes", progress=False), None, 5)
    assert (len(train_), len(test)) == (SHAPES_SIZES["train"], 5)


def test_a_baseline_measured_on_a_busy_machine_is_rescaled_to_the_speed_now():
    """The random-init side is measured before the calibration; if the machine was busier then (another process
    held a core), its costs, which the plan reserves for the trained side, are scaled down by the eval forward's
    speed-up measured again now, and never up. Without this a quickstart with one core busy at its start reserved
    2.5 min for 0.5 min of work after training and stopped at 63 % of its budget."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    images = torch.randint(0, 256, (1280, 3, 8, 8), dtype=torch.uint8)
    slow = Q.Side(dict(top1=0.4, seconds=40.0), np.zeros((1, 2)), 100.0, 1.0)  # 1 s an image: busy then
    now = slow.at_speed_now(model, images)
    assert 0 < now.feature_seconds_per_image < 0.01 and now.seconds < 1.0 and now.result["seconds"] < 0.4
    assert now.seconds / slow.seconds == pytest.approx(now.result["seconds"] / 40.0)
    assert now.result["top1"] == 0.4 and now.xy is slow.xy
    fast = Q.Side(dict(top1=0.4, seconds=40.0), np.zeros((1, 2)), 100.0, 1e-12)  # faster then than now: unchanged
    assert fast.at_speed_now(model, images).seconds == 100.0
    assert slow.at_speed_now(model, images[:100]).seconds == 100.0  # too few images to time: unchanged
