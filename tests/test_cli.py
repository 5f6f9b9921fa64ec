"""python -m simclr_lib: every command on the smoke preset, one-line errors, kill -9 and resume, torchrun."""
import argparse
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simclr_lib.cli import commands as main_module
from simclr_lib.runs.checkpoint import load_checkpoint
from simclr_lib.config import CHOICES, SimCLRConfig, field_comments

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, check=True, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    p = subprocess.run([sys.executable, "-m", "simclr_lib", *args], capture_output=True, text=True, env=env,
                       timeout=timeout, cwd=ROOT)
    if check and p.returncode != 0:
        raise AssertionError(p.stderr[-2000:])
    return p


SMOKE = ("--preset", "smoke", "--device", "cpu", "--no-progress")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    cli("pretrain", *SMOKE, "--out", str(out), "--epochs", "2")
    return out


def test_pretrain_writes_run(run_dir):
    assert (run_dir / "config.json").is_file() and (run_dir / "metrics.json").is_file()
    assert "model" in load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert list(run_dir.glob("events.out.tfevents.*"))


def test_resume_continues(run_dir, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run_dir, out)
    p = cli("pretrain", "--out", str(out), "--resume", "--epochs", "3", "--no-progress")  # the run's own settings
    assert json.loads(p.stdout)["epochs_run"] == 3


@pytest.mark.parametrize("args,needle", [
    (("pretrain", "--arch", "vit"), "arch='vit' is unknown"),
    (("pretrain", "--temperature", "0"), "temperature=0.0 must be > 0"),
    (("pretrain", "--batch-size", "abc"), "invalid int value"),
    (("pretrain", *SMOKE, "--batch-size", "4096"), "larger than the dataset"),
    (("pretrain", "--dataset", "cifar10", "--data-dir", "/nonexistent"), "/nonexistent"),
    (("linear-eval", "--checkpoint", "/nonexistent/last.pt"), "no checkpoint"),
])
def test_invalid_values_exit_with_one_line(args, needle, tmp_path):
    p = cli(*args, "--out", str(tmp_path / "x"), check=False) if args[0] == "pretrain" else cli(*args, check=False)
    assert p.returncode != 0
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 or p.stderr.startswith("usage")


def test_linear_eval_knn_embed(run_dir, tmp_path):
    common = ("--checkpoint", str(run_dir), "--device", "cpu", "--train-subset", "300", "--test-subset", "200")
    lin = json.loads(cli("linear-eval", *common, "--backend", "both").stdout)
    assert 0 <= lin["torch"]["top1"] <= 1 and 0 <= lin["sklearn"]["top1"] <= 1
    knn = json.loads(cli("knn", *common, "--k", "10").stdout)
    assert 0 <= knn["knn_top1"] <= 1
    fig = tmp_path / "tsne.png"
    res = json.loads(cli("embed", *common, "--out", str(fig), "--projector", str(tmp_path / "proj")).stdout)
    assert fig.stat().st_size > 1000 and Path(res["projector"]).exists()


def test_help_for_each_command():
    for c in ("pretrain", "linear-eval", "knn", "embed", "quickstart"):
        assert "usage" in cli(c, "--help").stdout


def test_quickstart_smoke(tmp_path):
    out = tmp_path / "qs"
    p = cli("quickstart", "--smoke", "--dataset", "shapes", "--device", "cpu", "--out", str(out), "--seed", "3")
    assert "linear probe" in p.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert {"linear_probe_top1", "random_init_probe_top1"} <= set(m) and (out / "tsne.png").is_file()
    assert m["config"]["seed"] == 3


def test_kill_9_loses_at_most_one_interval(tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "simclr_lib", "pretrain", *SMOKE, "--out", str(out), "--epochs", "12",
            "--knn-every", "0"]
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.2)
    time.sleep(1.0)  # let it run into later epochs, possibly mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch = load_checkpoint(ckpt)["epoch"]  # a complete file, never half-written
    assert 1 <= epoch < 12
    assert not [p for p in ckpt.parent.iterdir() if p.name != "last.pt" and p.suffix != ".tmp"]
    p = cli("pretrain", "--out", str(out), "--resume", "--checkpoint-every", "10", "--no-progress")
    assert json.loads(p.stdout)["epochs_run"] == 12
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.pt"]  # a killed write's temp file is cleaned


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_two_processes(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with socket.socket() as sock:  # a free port on loopback (port 0 makes torchrun's static rendezvous hang)
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    p = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", port,
                        "-m", "simclr_lib", "pretrain",
                        *SMOKE, "--out", str(tmp_path / "ddp"), "--knn-every", "0"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["metrics"]["world_size"] == 2
    assert json.loads(p.stdout)["world_size"] == 2  # one JSON document: only rank 0 prints


def _pretrain_parser() -> argparse.ArgumentParser:
    sub = next(a for a in main_module._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["pretrain"]


def test_every_config_field_has_a_flag():
    flags = main_module.PRETRAIN_FLAGS
    assert {field for field, _, _ in flags.values()} == \
        {f.name for f in dataclasses.fields(SimCLRConfig)} - set(main_module.CLI_EXCLUDED)
    assert flags["--out"][0] == "out_dir"
    assert flags["--lr-scaling"] == ("lr_scaling", str, field_comments()["lr_scaling"])
    assert (flags["--subset"][1], flags["--color-strength"][1], flags["--blur"][1]) == (int, float, bool)
    options = {o for a in _pretrain_parser()._actions for o in a.option_strings}
    earlier = ("--dataset --data-dir --folder --subset --image-size --arch --cifar-stem --zero-init-residual "
               "--proj-last-bn --batch-size --epochs --lr --optimizer --temperature --weight-decay --warmup-epochs "
               "--n-views --color-strength --blur --min-scale --precision --seed --device --out --checkpoint-every "
               "--knn-every --download --skip-corrupt --compile --no-progress --preset --resume --overwrite --debug")
    assert set(earlier.split()) <= options  # every flag users know still works


def test_help_is_the_field_comment():
    comments = field_comments()
    for action in _pretrain_parser()._actions:
        flag = next((o for o in action.option_strings if o in main_module.PRETRAIN_FLAGS), None)
        if flag is not None:
            field = main_module.PRETRAIN_FLAGS[flag][0]
            assert action.help.replace("%%", "%") == comments[field] != "", flag


def test_bool_fields_get_yes_and_no_flags():
    parser = _pretrain_parser()
    bools = [flag for flag, (_, typ, _) in main_module.PRETRAIN_FLAGS.items() if typ is bool]
    assert {"--blur", "--progress", "--compile", "--download"} <= set(bools)
    options = {o for a in parser._actions for o in a.option_strings}
    assert all(f in options and "--no-" + f[2:] in options for f in bools)
    given = lambda *a: main_module._given(parser.parse_args(list(a)))  # noqa: E731
    assert given() == {}  # unset: the preset's / data set's default
    assert given("--no-blur", "--blur") == {"blur": True}
    assert given("--no-progress", "--compile", "--no-cifar-stem", "--out", "x") == \
        {"progress": False, "compile": True, "cifar_stem": False, "out_dir": "x"}


@pytest.mark.parametrize("field", sorted(CHOICES))
def test_invalid_choice_lists_the_allowed_values(field, tmp_path, capsys):
    flag = "--" + field.replace("_", "-")
    action = next(a for a in _pretrain_parser()._actions if flag in a.option_strings)
    assert action.metavar == "{" + ",".join(CHOICES[field]) + "}"  # --help shows them
    code = main_module.main(["pretrain", "--preset", "smoke", "--out", str(tmp_path / "x"), flag, "nope"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.strip().endswith(f"{field}='nope' is unknown; choose one of {', '.join(CHOICES[field])}")
