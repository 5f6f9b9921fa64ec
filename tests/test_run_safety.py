"""A run is never lost, mixed or silently wrong (issue 10): resume from the run's own settings, no overwrite,
one writer per run folder, every CLI failure one line and exit 2. Tiny smoke runs on the CPU."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from simclr_lib import runtime, train
from simclr_lib.cli import commands as cli
from simclr_lib.config import SimCLRConfig
from simclr_lib.optim import warmup_cosine
from simclr_lib.runs.checkpoint import load_checkpoint, save_checkpoint
from simclr_lib.runs.registry import pretrained as load_model

ROOT = Path(__file__).resolve().parents[1]
LOCK_NAME = ".lock"  # simclr_lib.runs.lock.LOCK_NAME
SMOKE = ["--preset", "smoke", "--device", "cpu", "--no-progress", "--knn-every", "0"]


def run_cli(capsys, *args):
    """``python -m simclr_lib ARGS`` in this process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, needle):
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.fixture
def run(tmp_path, capsys):
    """A 1-epoch smoke run with non-default settings."""
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--temperature", "0.2", "--lr", "0.5", "--seed", "3",
                           "--epochs", "1", "--out", out)
    assert code == 0, err
    return out


# --- 1. resume continues the run as it was ----------------------------------------------------------------------
def test_resume_takes_every_setting_from_the_run(run, capsys):
    before = json.loads((run / "config.json").read_text())
    code, out, err = run_cli(capsys, "pretrain", "--out", run, "--resume", "--epochs", "2", "--no-progress")
    assert code == 0, err
    cfg = load_checkpoint(run / "checkpoints" / "last.pt")["config"]
    assert (cfg["temperature"], cfg["lr"], cfg["seed"], cfg["epochs"]) == (0.2, 0.5, 3, 2)
    assert "re-planned to reach 0 at step" in err and json.loads(out)["epochs_run"] == 2
    after = json.loads((run / "config.json").read_text())
    assert after["changes"] == [dict(at_epoch=1, epochs=[1, 2])]
    assert {k: v for k, v in after.items() if k not in ("epochs", "changes")} == \
        {k: v for k, v in before.items() if k != "epochs"}


@pytest.mark.parametrize("flag,value", [("--lr", "0.01"), ("--temperature", "0.5"), ("--seed", "0"),
                                        ("--warmup-epochs", "2"), ("--data-dir", "/elsewhere")])
def test_resume_refuses_a_changed_setting(run, capsys, flag, value):
    code, _, err = run_cli(capsys, "pretrain", "--out", run, "--resume", flag, value)
    one_line_error(code, err, f"{flag} cannot change when resuming")
    assert json.loads((run / "config.json").read_text()).get("changes") is None  # config.json untouched


def test_resume_api_refuses_other_settings_and_replans_a_longer_run(tmp_path):
    cfg = SimCLRConfig.smoke(out_dir=str(tmp_path / "r"), device="cpu", knn_every=0, epochs=2, warmup_epochs=1)
    train.pretrain(cfg)
    with pytest.raises(ValueError, match="temperature=0.5 there but 0.3 now"):
        train.pretrain(cfg.replace(temperature=0.3), resume=True)
    with pytest.raises(ValueError, match="already trained 2 epochs"):
        train.pretrain(cfg.replace(epochs=1), resume=True)
    run = train.setup_run(cfg.replace(epochs=4))
    train.resume_run(run, tmp_path / "r" / "checkpoints" / "last.pt")
    spe = run.steps_per_epoch
    expected = run.scheduler.base_lrs[0] * warmup_cosine(run.step, 4 * spe, spe)
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


# --- 2. no silent overwrite -------------------------------------------------------------------------------------
def test_a_fresh_run_into_a_run_folder_is_refused_unless_overwrite(run, capsys):
    code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "1", "--out", run)
    one_line_error(code, err, "already holds a run")
    assert "--resume" in err and "--overwrite" in err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["config"]["seed"] == 3  # untouched
    code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "1", "--out", run, "--overwrite")
    assert code == 0, err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["config"]["seed"] == 0
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # the old run's events are gone


# --- 3. one writer per run folder -------------------------------------------------------------------------------
def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "busy"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen([sys.executable, "-m", "simclr_lib", "pretrain", *SMOKE, "--epochs", "200",
                              "--out", str(out)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (out / LOCK_NAME).exists() and time.time() < deadline:
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "simclr_lib", "pretrain", *SMOKE, "--epochs", "1",
                                 "--out", str(out), "--overwrite"], env=env, cwd=ROOT, capture_output=True, text=True)
        assert second.returncode == 2 and f"is being written by pid {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()


def test_a_stale_lock_is_taken_over_and_the_lock_is_released(tmp_path, capsys):
    out = tmp_path / "stale"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / LOCK_NAME).write_text(json.dumps(dict(pid=gone.pid, host=socket.gethostname(), started="then")))
    code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "1", "--out", out)
    assert code == 0 and f"taking over the stale lock of pid {gone.pid}" in err
    assert not (out / LOCK_NAME).exists()


# --- 4. one line and exit 2 for every failure ------------------------------------------------------------------
def test_out_is_a_file_or_below_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    one_line_error(*run_cli(capsys, "pretrain", *SMOKE, "--out", f)[::2], "is a file, not a folder")
    one_line_error(*run_cli(capsys, "pretrain", *SMOKE, "--out", f / "run")[::2], "cannot create the run folder")


def test_read_only_run_folder(tmp_path, monkeypatch):
    from simclr_lib.runs.lock import prepare_out_dir

    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # a read-only file system (root ignores mode bits)
    with pytest.raises(ValueError, match="cannot write to the run folder"):
        prepare_out_dir(tmp_path / "ro", resume=False, overwrite=False)


def test_full_disk_keeps_the_last_checkpoint_and_says_so(tmp_path, monkeypatch, capsys):
    out = tmp_path / "full"
    calls = []
    real = torch.save

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) > 1:  # the second checkpoint hits a full disk, as torch reports it
            f.write(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return real(obj, f, *a, **k)
    monkeypatch.setattr(runtime.torch, "save", save)
    code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "2", "--checkpoint-every", "1", "--out", out)
    one_line_error(code, err, "no space left on the device")
    assert "the previous checkpoint" in err and "intact" in err and "enforce fail" not in err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]


@pytest.mark.parametrize("args,needle", [
    (("--checkpoint-every", "0"), "checkpoint_every=0 must be >= 1"),
    (("--temperature", "inf"), "temperature=inf must be a finite number"),
    (("--lr", "inf"), "lr=inf must be a finite number"),
    (("--lr", "nan"), "lr=nan must be a finite number"),
])
def test_meaningless_values_are_refused_before_training(tmp_path, capsys, args, needle):
    code, _, err = run_cli(capsys, "pretrain", *SMOKE, *args, "--out", tmp_path / "x")
    one_line_error(code, err, needle)
    assert not (tmp_path / "x" / "checkpoints").exists()


@pytest.mark.parametrize("content,needle", [
    (lambda: {"encoder.weight": torch.zeros(2)}, "is not a simclr_lib checkpoint"),
    (lambda: {"images": torch.zeros(2, dtype=torch.uint8), "labels": torch.zeros(2)}, "is not a simclr_lib checkpoint"),
    (lambda: [torch.zeros(1)], "it holds list"),
    (lambda: torch.nn.Linear(2, 2), "Python objects that a safe (weights-only) load refuses"),
])
def test_a_torch_file_that_is_no_checkpoint(tmp_path, capsys, content, needle):
    path = tmp_path / "thing.pt"
    torch.save(content(), path)
    code, _, err = run_cli(capsys, "knn", "--checkpoint", path, "--device", "cpu")
    one_line_error(code, err, needle)
    assert "weights_only=False" not in err


def test_debug_shows_the_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), SIMCLR_DEBUG="1")
    p = subprocess.run([sys.executable, "-m", "simclr_lib", "pretrain", *SMOKE, "--lr", "inf", "--out",
                        str(tmp_path / "x")], env=env, cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" in p.stderr


# --- 5. messages that can be acted on ----------------------------------------------------------------------------
def test_weights_of_another_architecture_say_what_does_not_fit(tmp_path):
    cfg = SimCLRConfig.smoke(arch="small")
    other = SimCLRConfig.smoke(arch="resnet18")
    from simclr_lib.config import build_model

    path = save_checkpoint(dict(model=build_model(other).state_dict(), config=cfg.to_dict(), epoch=1, step=1),
                           tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"do not fit the model its config describes: \d+ missing \(e\.g\. "):
        load_model(path)


@pytest.mark.parametrize("kw,first_cause", [(dict(temperature=0.01), "temperature=0.01 is low"),
                                            (dict(weight_decay=0.5), "weight_decay=0.5 is high"),
                                            ({}, "the peak learning rate")])
def test_divergence_names_the_likely_setting(tmp_path, kw, first_cause):
    cfg = SimCLRConfig.smoke(out_dir=str(tmp_path / "d"), device="cpu", knn_every=0, epochs=2, **kw)

    def poison(record):
        with torch.no_grad():
            next(iter(poison.run.core.parameters())).fill_(float("nan"))
    real = train.setup_run

    def setup(*a, **k):
        poison.run = real(*a, **k)
        return poison.run
    train.setup_run, saved = setup, train.setup_run
    try:
        with pytest.raises(FloatingPointError) as e:
            train.pretrain(cfg, callbacks=[poison])
    finally:
        train.setup_run = saved
    assert f"likely causes: {first_cause}" in str(e.value) and "\n" not in str(e.value)


# --- 6. weights that diverge while the loss stays finite --------------------------------------------------------
def test_diverging_weights_stop_the_run_and_keep_the_last_sane_checkpoint(tmp_path, monkeypatch):
    cfg = SimCLRConfig.smoke(out_dir=str(tmp_path / "w"), device="cpu", knn_every=0, epochs=3)
    runs = []
    real = train.setup_run
    monkeypatch.setattr(train, "setup_run", lambda *a, **k: runs.append(real(*a, **k)) or runs[-1])

    def blow_up(record):
        if record["epoch"] == 1:
            with torch.no_grad():
                for p in runs[0].core.encoder.parameters():
                    if p.ndim == 4:
                        p.mul_(1e12)  # BatchNorm keeps the loss finite; the weights are 1e12 times too large
    with pytest.raises(FloatingPointError, match="the weights diverged"):
        train.pretrain(cfg, callbacks=[blow_up])
    ckpt = load_checkpoint(tmp_path / "w" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1
    assert max(v.abs().max().item() for v in ckpt["model"].values() if v.is_floating_point()) < 1e3


# --- 12. run files take the umask's mode; the smoke preset on a small folder ------------------------------------
def test_run_files_have_the_usual_mode(run):
    mask = os.umask(0)
    os.umask(mask)
    for p in (run / "config.json", run / "metrics.json", run / "checkpoints" / "last.pt"):
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask, p


def test_smoke_preset_uses_all_of_a_small_folder(tmp_path, capsys):
    from PIL import Image

    for i in range(134):
        d = tmp_path / "imgs" / f"c{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (i, 2 * i % 255, 50)).save(d / f"{i}.png")
    code, out, err = run_cli(capsys, "pretrain", *SMOKE, "--dataset", "folder", "--folder", tmp_path / "imgs",
                             "--out", tmp_path / "f")
    assert code == 0, err
    assert load_checkpoint(tmp_path / "f" / "checkpoints" / "last.pt")["config"]["subset"] is None


def test_resuming_from_an_older_checkpoint_leaves_no_stale_tensorboard_events(tmp_path):
    """A run that died after writing events past its last checkpoint, then resumed: TensorBoard (and notebook
    03's plot, which reads the folder with EventAccumulator) must show every step once, not the dead run's steps
    drawn back over by the replay."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = SimCLRConfig.smoke(subset=640, device="cpu", knn_every=0, out_dir=str(tmp_path / "r"))  # 10 steps/epoch
    train.pretrain(cfg)
    ckpt = tmp_path / "r" / "checkpoints" / "last.pt"
    after_epoch_1 = ckpt.read_bytes()
    train.pretrain(cfg.replace(epochs=3), resume=True)  # events of steps 11-30
    ckpt.write_bytes(after_epoch_1)  # as if the run had died right after writing them, before its checkpoint
    train.pretrain(cfg.replace(epochs=3), resume=True)  # replays steps 11-30
    acc = EventAccumulator(str(tmp_path / "r")).Reload()
    for tag in ("train/loss", "train/lr"):
        steps = [e.step for e in acc.Scalars(tag)]
        assert steps == [10, 20, 30], f"{tag}: {steps}"
    losses = [e.value for e in acc.Scalars("train/loss")]
    final = load_checkpoint(ckpt)["history"]
    assert len(final) == 3 and [r["epoch"] for r in final] == [1, 2, 3]
    assert losses[-1] == pytest.approx(final[-1]["loss"], rel=0.5)  # the replay's values, not the dead run's
