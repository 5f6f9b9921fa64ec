"""The quickstart on a time budget (issue 11, item 2): the smoke preset on `shapes` with a FAKE SLOW STEP.

``train.train_step`` is replaced by a ``time.sleep`` of a chosen length (the calibration and ``pretrain`` both call
it), so the step time is known; the random-init / trained probe + t-SNE (``Side.measure``) and the kNN monitor are
replaced by fixed sleeps too, so the only real work left (augmentation, checkpoints, the figure) is small and a
loaded CI machine cannot change what is tested. One torch thread: on 2 shared cores two threads per process made
everything 10-40x slower in our measurements.
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

from simclr_lib.cli import commands as main_module
from simclr_lib.cli import quickstart as Q
from simclr_lib import train

SIDE_SECONDS = 0.3  # the fake probe + t-SNE of one side


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fake_step(seconds):
    """A train_step that sleeps ``seconds()`` and returns a finite loss and unit-norm z of the right shape."""
    def step(model, views, *args, **kwargs):
        time.sleep(seconds())
        return torch.tensor(4.0), F.normalize(torch.randn(views.shape[0], 8), dim=1)
    return step


def fake_measure(seconds=lambda: SIDE_SECONDS):
    def measure(model, train_data, test_data, n_plot):
        s = seconds()
        time.sleep(s)
        result = dict(top1=0.5, seconds=s / 2, n_train=len(train_data))
        return Q.Side(result, np.zeros((n_plot, 2), np.float32), s, 1e-5)
    return staticmethod(measure)


def patch(mp, step_seconds, side_seconds=lambda: SIDE_SECONDS):
    mp.setattr(train, "train_step", fake_step(step_seconds))
    mp.setattr(train, "knn_monitor", lambda *a: 0.0)
    mp.setattr(Q.Side, "measure", fake_measure(side_seconds))


def quickstart(out, minutes=None, epochs=None):
    """A smoke quickstart on shapes; returns (metrics, wall seconds)."""
    t0 = time.perf_counter()
    m = Q.run_quickstart(str(out), device="cpu", smoke=True, dataset="shapes", progress=False, minutes=minutes,
                         epochs=epochs)
    return m, time.perf_counter() - t0


def budgeted(tmp_path_factory, step_s, minutes):
    """A budgeted run with a step of ``step_s``; returns (metrics, wall seconds, stdout)."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        patch(mp, lambda: step_s)
        m, wall = quickstart(tmp_path_factory.mktemp("qs") / "run", minutes=minutes)
    return m, wall, out.getvalue()


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    return budgeted(tmp_path_factory, 0.04, 0.15)


def plan_lines(text):
    return [line for line in text.splitlines() if "s/step measured" in line]


def test_a_3x_slower_step_trains_a_third_of_the_epochs_in_the_same_budget(fast, tmp_path_factory):
    (m1, wall1, _), (m3, wall3, _) = fast, budgeted(tmp_path_factory, 0.12, 0.15)
    assert 2.4 < m3["seconds_per_step"] / m1["seconds_per_step"] < 3.2
    assert m1["planned_epochs"] >= 10  # enough epochs for a ratio to mean something
    assert 0.22 < m3["planned_epochs"] / m1["planned_epochs"] < 0.45, (m1["planned_epochs"], m3["planned_epochs"])
    for m, wall in ((m1, wall1), (m3, wall3)):
        assert m["budget_minutes"] == 0.15 and wall <= 9.0 and m["total_seconds"] <= 9.0
        assert m["epochs_run"] == m["planned_epochs"] and not m["deadline_stop"]
        assert m["config"]["epochs"] == m["planned_epochs"]  # the LR schedule is planned for them
    assert wall3 < 1.5 * wall1  # fewer epochs, not a longer run


def test_b_plan_line_printed_once_and_recorded(fast):
    m, _, out = fast
    lines = plan_lines(out)
    assert len(lines) == 1, lines
    assert f"-> {m['planned_epochs']} epochs of 4 steps on 256 images to fit 0.15 min" in lines[0]
    assert out.index(lines[0]) < out.index("quickstart: linear probe")  # before training, not at the end
    saved = json.loads((Path(m["tsne_figure"]).parent / "metrics.json").read_text())
    for key in ("budget_minutes", "planned_epochs", "epochs_run", "seconds_per_step", "total_seconds"):
        assert saved[key] == m[key] and saved[key] is not None


def test_c_step_slowing_mid_run_stops_at_the_deadline_within_budget(tmp_path, capsys, monkeypatch):
    phase = dict(training=False, calls=0)

    def step_seconds():
        phase["calls"] += phase["training"]
        return 0.3 if phase["calls"] > 8 else 0.03  # ten times slower after two epochs of training

    real_pretrain = Q.pretrain

    def pretrain(*args, **kwargs):
        phase["training"] = True
        return real_pretrain(*args, **kwargs)

    patch(monkeypatch, step_seconds, side_seconds=lambda: 2 * SIDE_SECONDS if phase["training"] else SIDE_SECONDS)
    monkeypatch.setattr(Q, "pretrain", pretrain)
    m, wall = quickstart(tmp_path / "run", minutes=0.15)
    out = capsys.readouterr().out
    assert m["planned_epochs"] >= 20  # at 0.3 s/step they would take >= 24 s of the 9 s budget
    assert m["deadline_stop"] and 2 <= m["epochs_run"] < m["planned_epochs"]
    assert wall <= 9.0 and m["total_seconds"] <= 9.0
    stops = [line for line in out.splitlines() if line.startswith("quickstart: stopping after epoch")]
    assert len(stops) == 1 and f"epoch {m['epochs_run']} of {m['planned_epochs']}" in stops[0]
    assert len(plan_lines(out)) == 1


def test_d_epochs_override_the_budget(tmp_path, capsys, monkeypatch):
    patch(monkeypatch, lambda: 0.01)
    monkeypatch.setattr(Q, "calibrate", lambda *a: pytest.fail("calibrated although --epochs was given"))
    m, _ = quickstart(tmp_path / "run", minutes=0.01, epochs=3)  # 0.6 s could not hold 3 epochs + the reserve
    assert m["epochs_run"] == m["planned_epochs"] == 3 and m["budget_minutes"] is None
    assert not plan_lines(capsys.readouterr().out)
    assert Q.budget_minutes(smoke=False, epochs=None, minutes=None) == Q.DEFAULT_MINUTES
    assert Q.budget_minutes(smoke=True, epochs=None, minutes=None) is None
    assert Q.budget_minutes(smoke=False, epochs=5, minutes=3.0) is None

    seen = {}
    monkeypatch.setattr(Q, "run_quickstart", lambda *a, **kw: seen.update(kw))
    assert main_module.main(["quickstart", "--epochs", "4", "--minutes", "2"]) == 0
    assert seen["epochs"] == 4 and seen["minutes"] == 2.0
    assert main_module.main(["quickstart"]) == 0 and seen["minutes"] is None and seen["epochs"] is None


def test_e_planner_shrinks_the_subset_when_few_epochs_fit():
    assert Q.plan_epochs(100.0, 0.1, 256, 64) == (250, 256)  # all images, as many epochs as fit
    assert Q.plan_epochs(1.0, 0.1, 256, 64) == (3, 192)  # 10 steps: not 3 epochs of 4, so 3 epochs of 3
    assert Q.plan_epochs(2.0, 0.1, 256, 64, checkpoint_s=0.4) == (3, 128)  # each epoch's checkpoint costs 4 steps
    assert Q.plan_epochs(0.25, 0.1, 256, 64) == (0, 0)  # not even 3 steps


def test_e_budget_for_few_steps_trains_a_smaller_subset(tmp_path, capsys, monkeypatch):
    patch(monkeypatch, lambda: 0.5)
    monkeypatch.setattr(Q, "calibrate", lambda *a: (0.5, 0.02, 0.1))  # ~3.5 s of training fit: 7 steps, not 12
    m, wall = quickstart(tmp_path / "run", minutes=0.1)
    assert m["planned_epochs"] == Q.MIN_EPOCHS == m["epochs_run"]
    assert 64 <= m["pretrain_images"] < 256 and m["pretrain_images"] % 64 == 0
    assert m["config"]["subset"] == m["pretrain_images"] and wall <= 6.0
    assert f"on {m['pretrain_images']} images" in plan_lines(capsys.readouterr().out)[0]


def test_e_budget_too_short_is_one_line_naming_minutes(tmp_path, capsys, monkeypatch):
    patch(monkeypatch, lambda: 0.05)
    out = tmp_path / "run"
    code = main_module.main(["quickstart", "--smoke", "--dataset", "shapes", "--device", "cpu", "--out", str(out),
                             "--minutes", "0.02"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # (and progress bars)
    assert code == 2 and len(errors) == 1 and errors[0].startswith("python -m simclr_lib quickstart: error: ")
    assert "--minutes 0.02 is too short" in errors[0] and "give --minutes" in errors[0]
    assert not (out / "checkpoints").exists()  # stopped before training
