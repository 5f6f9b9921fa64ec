"""Issue 21: nothing a user did not ask to lose is lost, no folder stays locked, every message is true.

Tiny smoke runs on the CPU; the lock race runs 12 processes at once; the download runs against a stand-in HTTP
server on 127.0.0.1 (never the real host).
"""
from __future__ import annotations

import errno
import hashlib
import http.server
import io
import json
import multiprocessing as mp
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr_lib import runtime
from simclr_lib.cli import commands as cli
from simclr_lib.runs import lock as L
from simclr_lib.runs.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--preset", "smoke", "--device", "cpu", "--no-progress", "--knn-every", "0"]
pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(capsys, *args):
    """``python -m simclr_lib ARGS`` in this process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *needles):
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    """A finished 1-epoch smoke run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("reliability") / "run"
    assert cli.main(["pretrain", *SMOKE, "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_copy(done_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(done_run, out)
    return out


# --- 1. --overwrite and every move aside touch only the run's own files ----------------------------------------------
def test_overwrite_keeps_files_the_run_did_not_write(run_copy, capsys):
    other = run_copy / "checkpoints" / "other_model.pt"
    other.write_bytes(b"another tool's model")
    (run_copy / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "1", "--seed", "5", "--out", run_copy,
                           "--overwrite")
    assert code == 0, err
    assert other.read_bytes() == b"another tool's model" and (run_copy / "notes.txt").read_text() == "mine"
    assert load_checkpoint(run_copy / "checkpoints" / "last.pt")["config"]["seed"] == 5
    line = next(x for x in err.splitlines() if "replacing the run" in x)
    assert "checkpoints/last.pt" in line and "other_model.pt" in line  # what went, and what was left alone


def test_overwrite_never_deletes_another_tools_config(tmp_path, capsys):
    out = tmp_path / "shared"
    (out / "checkpoints").mkdir(parents=True)
    foreign = {"model_name": "bert-base", "learning_rate": 1e-4}
    (out / "config.json").write_text(json.dumps(foreign))
    (out / "checkpoints" / "other_model.pt").write_bytes(b"weights")
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "1", "--out", out, *extra)
        one_line_error(code, err, str(out / "config.json"), "not a simclr_lib")
    assert json.loads((out / "config.json").read_text()) == foreign
    assert (out / "checkpoints" / "other_model.pt").read_bytes() == b"weights"


def test_a_checkpoint_moved_aside_survives_the_retrain(run_copy, capsys):
    """teaching.notebook.pretrained moves an unreadable last.pt to last.pt.corrupt, then retrains with overwrite."""
    ckpt = run_copy / "checkpoints" / "last.pt"
    aside = ckpt.with_name("last.pt.corrupt")
    os.replace(ckpt, aside)
    kept = aside.read_bytes()
    code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "1", "--out", run_copy, "--overwrite")
    assert code == 0, err
    assert aside.read_bytes() == kept and ckpt.is_file()


def test_clear_run_removes_only_what_a_run_writes(run_copy):
    (run_copy / "checkpoints" / "last.pt.corrupt").write_bytes(b"x")
    (run_copy / "checkpoints" / ".simclr-abcd1234.tmp").write_bytes(b"half")
    (run_copy / "tsne_of_mine.png").write_bytes(b"png")
    L.clear_run(run_copy)
    assert sorted(p.name for p in run_copy.rglob("*")) == ["checkpoints", "last.pt.corrupt", "tsne_of_mine.png"]


def test_a_finished_run_whose_checkpoint_was_deleted_is_not_replaced_silently(run_copy, capsys):
    (run_copy / "checkpoints" / "last.pt").unlink()
    code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "1", "--out", run_copy)
    one_line_error(code, err, "already holds a run", "metrics.json")
    assert (run_copy / "config.json").is_file() and (run_copy / "metrics.json").is_file()


# --- 2. no folder stays locked --------------------------------------------------------------------------------------
def _gone_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("content", [
    b"",  # a run started on a full disk
    b"\x00\xffgarbage{",  # not JSON
    "own",  # a lock naming this very process (e.g. pid 1 in a restarted container)
    "pid1",  # a lock naming a live process that does not hold it
], ids=["empty", "garbage", "own-pid", "pid-1"])
def test_a_lock_nobody_holds_is_taken_over(tmp_path, capsys, content):
    host = socket.gethostname()
    if content == "own":
        content = json.dumps(dict(pid=os.getpid(), host=host, started="earlier")).encode()
    elif content == "pid1":
        content = json.dumps(dict(pid=1, host=host, started="earlier")).encode()
    (tmp_path / L.LOCK_NAME).write_bytes(content)
    with L.RunLock(tmp_path) as lock:
        assert lock.held
    assert not (tmp_path / L.LOCK_NAME).exists()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "taking over" in err and str(tmp_path) in err, err


def test_a_full_disk_leaves_no_lock_behind(tmp_path, monkeypatch):
    """Writing the lock's content fails: one line, and no 0-byte .lock that blocks the next run."""
    def is_lock(fd: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}").endswith(L.LOCK_NAME)
        except OSError:
            return False

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    class Full(io.StringIO):
        write = staticmethod(full)

    real_write, real_fdopen = os.write, os.fdopen
    monkeypatch.setattr(os, "write", lambda fd, data: full() if is_lock(fd) else real_write(fd, data))
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full() if is_lock(fd) else real_fdopen(fd, *a, **k))
    with pytest.raises(ValueError) as e:
        L.RunLock(tmp_path).__enter__()
    assert "no space" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / L.LOCK_NAME).exists()


HOLD = "import sys, time; from simclr_lib.runs.lock import RunLock\nwith RunLock(sys.argv[1]):\n    " \
       "print('held', flush=True); time.sleep(60)"


def test_a_live_holder_is_refused_by_pid_and_a_killed_one_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], env=env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError) as e:
            L.RunLock(tmp_path).__enter__()
        assert f"is being written by pid {holder.pid}" in str(e.value) and "\n" not in str(e.value)
        (tmp_path / "other").mkdir()
        with L.RunLock(tmp_path / "other"):  # other folders are free
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / L.LOCK_NAME).exists()  # kill -9 runs no clean-up ...
    with L.RunLock(tmp_path):  # ... and the lock is still free at once
        pass


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    with L.RunLock(tmp_path):
        with pytest.raises(ValueError, match="this process"):
            L.RunLock(tmp_path).__enter__()


# --- 3. stale-lock takeover is atomic: exactly one winner under contention --------------------------------------------
WORKERS, TRIALS = 12, 60


def _contend(folder: str, barrier, wins, index: int) -> None:
    for trial in range(TRIALS):
        if index == 0:  # a dead process's lock before each trial
            Path(folder, L.LOCK_NAME).write_text(json.dumps(dict(pid=_GONE, host=socket.gethostname(),
                                                                 started="then")))
        barrier.wait()
        lock = L.RunLock(Path(folder))
        try:
            lock.__enter__()
        except ValueError:
            pass
        else:
            with wins.get_lock():
                wins[trial] += 1
        barrier.wait()  # every process has tried while the winners still hold the lock
        if lock.held:
            lock.__exit__(None, None, None)
        barrier.wait()


_GONE = 0


def test_stale_lock_takeover_has_exactly_one_winner(tmp_path, capfd):
    global _GONE
    _GONE = _gone_pid()
    ctx = mp.get_context("fork")
    barrier, wins = ctx.Barrier(WORKERS), ctx.Array("i", TRIALS)
    procs = [ctx.Process(target=_contend, args=(str(tmp_path), barrier, wins, i)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    assert list(wins) == [1] * TRIALS, f"writers per trial: {list(wins)}"


# --- 4. an interrupt at any moment leaves a folder that a re-run or --resume continues ------------------------------
def _interrupt_checkpoint_writes(monkeypatch, after: int = 0) -> None:
    """Ctrl-C while checkpoint number ``after`` + 1 is written (torch.save of a dict holding "optimizer")."""
    real, calls = torch.save, []

    def save(obj, f, *a, **k):
        if isinstance(obj, dict) and "optimizer" in obj:
            calls.append(1)
            if len(calls) > after:
                raise KeyboardInterrupt
        return real(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", save)


def test_interrupt_in_the_first_epoch_then_a_plain_rerun(tmp_path, capsys, monkeypatch):
    out = tmp_path / "first"
    with monkeypatch.context() as m:
        _interrupt_checkpoint_writes(m)
        code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "2", "--out", out)
    assert code == 130 and len(err.strip().splitlines()) == 1, err
    assert "no checkpoint" in err and "same command" in err and "Traceback" not in err
    assert not (out / L.LOCK_NAME).exists()
    code, stdout, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "2", "--out", out)
    assert code == 0, err
    assert json.loads(stdout)["epochs_run"] == 2
    assert len(list(out.glob("events.out.tfevents.*"))) == 1  # the stopped start's events went with it


def test_interrupt_in_the_first_epoch_then_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "first"
    with monkeypatch.context() as m:
        _interrupt_checkpoint_writes(m)
        assert run_cli(capsys, "pretrain", *SMOKE, "--epochs", "2", "--seed", "4", "--out", out)[0] == 130
    code, stdout, err = run_cli(capsys, "pretrain", "--out", out, "--resume", "--no-progress")
    assert code == 0, err
    assert "never wrote a checkpoint" in err and "afresh" in err
    assert json.loads(stdout)["epochs_run"] == 2 and json.loads(stdout)["seed"] == 4  # its own settings


def test_interrupt_after_a_checkpoint_says_resume_and_resume_works(tmp_path, capsys, monkeypatch):
    out = tmp_path / "later"
    with monkeypatch.context() as m:
        _interrupt_checkpoint_writes(m, after=1)
        code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "3", "--out", out)
    assert code == 130 and len(err.strip().splitlines()) == 1 and "--resume" in err, err
    assert str(out / "checkpoints" / "last.pt") in err
    code, stdout, err = run_cli(capsys, "pretrain", "--out", out, "--resume", "--no-progress")
    assert code == 0 and json.loads(stdout)["epochs_run"] == 3, err


def test_sigterm_is_an_interrupt_that_releases_the_lock(tmp_path):
    out = tmp_path / "term"
    proc = subprocess.Popen([sys.executable, "-m", "simclr_lib", "pretrain", *SMOKE, "--epochs", "500",
                             "--out", str(out)], env=env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and not (out / "checkpoints" / "last.pt").exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated" in err.strip().splitlines()[-1] and "--resume" in err.strip().splitlines()[-1], err
    assert "Traceback" not in err and not (out / L.LOCK_NAME).exists()


# --- 5. every message is true -----------------------------------------------------------------------------------------
class _InterruptingFile(io.RawIOBase):
    """A file whose write raises KeyboardInterrupt after ``after`` bytes (Ctrl-C in the middle of torch.save)."""

    def __init__(self, f, after: int):
        self.f, self.left = f, after

    def writable(self):
        return True

    def write(self, b):
        self.left -= len(b)
        if self.left < 0:
            raise KeyboardInterrupt
        return self.f.write(b)

    def flush(self):
        self.f.flush()

    def fileno(self):
        return self.f.fileno()

    def close(self):
        super().close()
        self.f.close()


def test_ctrl_c_while_last_pt_is_written_is_an_interrupt_not_a_full_disk(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ctrlc"
    real, count = os.fdopen, []

    def fdopen(fd, *a, **k):
        f = real(fd, *a, **k)
        if "checkpoints" in os.readlink(f"/proc/self/fd/{fd}"):
            count.append(1)
            if len(count) == 2:  # the second checkpoint
                return _InterruptingFile(f, after=1000)
        return f
    with monkeypatch.context() as m:
        m.setattr(os, "fdopen", fdopen)
        code, _, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "3", "--out", out)
    assert code == 130 and "interrupted" in err and "space" not in err, err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]


def test_save_checkpoint_reraises_an_interrupt_inside_torch_save(tmp_path, monkeypatch):
    real = torch.save

    def save(obj, f, *a, **k):  # torch turns an exception of the file's write into "unexpected pos"
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"a": torch.zeros(3)}, tmp_path / "last.pt")
    monkeypatch.setattr(torch, "save", real)
    assert not list(tmp_path.iterdir())


def _nan_copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    path = dest / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][key].view(-1)[0] = float("nan")
    torch.save(ckpt, path)
    return path


def test_a_checkpoint_with_nan_weights_is_refused_in_one_line(done_run, tmp_path, capsys):
    path = _nan_copy(done_run, tmp_path / "nan")
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "NaN" in str(e.value) and "\n" not in str(e.value)
    code, out, err = run_cli(capsys, "knn", "--checkpoint", tmp_path / "nan", "--device", "cpu", "--k", "5",
                             "--train-subset", "64", "--test-subset", "64")
    one_line_error(code, err, str(path), "NaN")
    assert out == ""
    code, _, err = run_cli(capsys, "pretrain", "--out", tmp_path / "nan", "--resume", "--epochs", "2")
    one_line_error(code, err, str(path), "NaN")
    assert "learning rate" not in err and "last good" not in err


def test_quickstart_into_an_existing_run_advises_only_what_quickstart_takes(done_run, capsys):
    code, _, err = run_cli(capsys, "quickstart", "--smoke", "--dataset", "shapes", "--device", "cpu",
                           "--out", done_run)
    one_line_error(code, err, "--overwrite")
    assert "--resume" not in err


def test_an_invalid_config_json_is_named(run_copy, capsys):
    (run_copy / "config.json").write_text("{not json")
    code, _, err = run_cli(capsys, "pretrain", "--out", run_copy, "--resume", "--epochs", "2")
    one_line_error(code, err, str(run_copy / "config.json"))
    (run_copy / "config.json").write_text(json.dumps({"arch": "small", "temperature": 0.5, "flux": 1}))
    code, _, err = run_cli(capsys, "pretrain", "--out", run_copy, "--resume", "--epochs", "2")
    one_line_error(code, err, str(run_copy / "config.json"), "flux")


# --- 6. smaller ones ----------------------------------------------------------------------------------------------
def test_a_symlink_loop_is_not_a_class(tmp_path):
    from PIL import Image

    from simclr_lib.data import load_dataset

    root = tmp_path / "imgs"
    for cls, colour in (("ant", (200, 0, 0)), ("bee", (0, 200, 0))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), colour).save(root / cls / f"{i}.png")
    (root / "loop").symlink_to(".")
    (root / "bee2").symlink_to("bee")
    with pytest.warns(UserWarning, match="loop") as record:
        d = load_dataset("folder", folder=root, cache=False, progress=False)
    assert d.classes == ["ant", "bee"] and len(d) == 6
    assert any("bee2" in str(w.message) for w in record)


def test_knn_out_with_a_255_character_name(done_run, tmp_path, capsys):
    out = tmp_path / ("k" * 250 + ".json")
    assert len(out.name) == 255
    code, stdout, err = run_cli(capsys, "knn", "--checkpoint", done_run, "--device", "cpu", "--k", "5",
                                "--train-subset", "64", "--test-subset", "64", "--out", out)
    assert code == 0, err
    assert json.loads(out.read_text())["knn_top1"] == json.loads(stdout)["knn_top1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_a_result_that_cannot_be_written_is_printed_first(done_run, tmp_path, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(runtime, "atomic_write_text", full)
    code, stdout, err = run_cli(capsys, "knn", "--checkpoint", done_run, "--device", "cpu", "--k", "5",
                                "--train-subset", "64", "--test-subset", "64", "--out", tmp_path / "r.json")
    one_line_error(code, err, str(tmp_path / "r.json"), "printed above")
    assert 0 <= json.loads(stdout)["knn_top1"] <= 1


@pytest.mark.parametrize("value", ["false", "0", "no", "OFF", ""])
def test_simclr_debug_no_means_no(value, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIMCLR_DEBUG", value)
    code, _, err = run_cli(capsys, "knn", "--checkpoint", tmp_path / "nowhere")
    one_line_error(code, err, "no checkpoint")


def test_simclr_debug_garbage_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIMCLR_DEBUG", "maybe")
    code, _, err = run_cli(capsys, "knn", "--checkpoint", tmp_path / "nowhere")
    one_line_error(code, err, "SIMCLR_DEBUG='maybe'")


def test_simclr_debug_yes_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMCLR_DEBUG", "yes")
    with pytest.raises(FileNotFoundError):
        cli.main(["knn", "--checkpoint", str(tmp_path / "nowhere")])


def test_a_refused_pickle_says_one_line_and_no_torch_warning(tmp_path):
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"model": 1, "config": {}}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="Python objects"):
            load_checkpoint(path)
    assert [str(w.message) for w in caught] == []


def test_the_exit_status_of_python_m_simclr_lib(tmp_path):
    p = subprocess.run([sys.executable, "-m", "simclr_lib", "knn", "--checkpoint", str(tmp_path / "none")],
                       env=env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr


# --- 7. a newcomer's first hour -------------------------------------------------------------------------------------
def _fake_cifar_tarball(n_train: int = 64, n_test: int = 128) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
        for name in names:
            n = n_test if name == "test_batch" else n_train
            labels = [i % 10 for i in range(n)]
            colour = np.array([[(30 * y) % 256, (70 * y) % 256, (110 * y) % 256] for y in labels], dtype=np.uint8)
            data = (np.repeat(colour[:, :, None], 1024, axis=2).reshape(n, 3072)
                    + rng.integers(0, 20, (n, 3072), dtype=np.uint8))
            raw = pickle.dumps({b"labels": labels, b"data": data}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


@pytest.fixture
def cifar_server(monkeypatch):
    """A stand-in for the CIFAR-10 host on 127.0.0.1; the data module downloads from it."""
    from simclr_lib.data import releases

    blob, hits = _fake_cifar_tarball(), []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            self.wfile.write(blob)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(releases, "CIFAR10_URL", f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz")
    monkeypatch.setattr(releases, "CIFAR10_MD5", hashlib.md5(blob).hexdigest())
    yield hits
    server.shutdown()


def test_quickstart_downloads_cifar10(cifar_server, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "qs"
    code, stdout, err = run_cli(capsys, "quickstart", "--smoke", "--download", "--data-dir", data, "--device", "cpu",
                                "--out", out)
    assert code == 0, err
    assert cifar_server and "pre-training on cifar10" in stdout
    assert json.loads((out / "metrics.json").read_text())["dataset"] == "cifar10"
    assert (data / "cifar-10-batches-py" / "test_batch").is_file()


def test_quickstart_without_cifar10_says_how_to_get_it(tmp_path, capsys):
    from simclr_lib.data import find_dataset

    name, why = find_dataset(tmp_path / "empty")
    assert name == "shapes"
    code, stdout, err = run_cli(capsys, "quickstart", "--smoke", "--data-dir", tmp_path / "empty", "--device", "cpu",
                                "--out", tmp_path / "qs")
    assert code == 0, err
    line = next(x for x in stdout.splitlines() if "pre-training on shapes" in x)
    assert "--download" in line


def test_pretrain_says_where_the_run_was_written(tmp_path, capsys):
    out = tmp_path / "here"
    code, stdout, err = run_cli(capsys, "pretrain", *SMOKE, "--epochs", "1", "--out", out)
    assert code == 0 and json.loads(stdout)["epochs_run"] == 1
    assert f"run written to {out}" in err


def _subparsers():
    import argparse

    sub = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_option_has_help_and_shows_its_default():
    for name, parser in _subparsers().items():
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"
    helps = {name: p.format_help() for name, p in _subparsers().items()}
    assert "(default: runs/quickstart)" in helps["quickstart"] and "(default: 200)" in helps["knn"]
    assert "(default: auto)" in helps["knn"] and "(default: 0.5)" in helps["pretrain"]  # --temperature
    assert "--download" in helps["quickstart"]
    assert "(default: None)" not in "".join(helps.values()) and "(default: False)" not in "".join(helps.values())


def test_readme_tells_a_newcomer_how_to_get_cifar10_and_a_cpu_torch():
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "quickstart --download" in readme
