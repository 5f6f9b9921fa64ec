"""linear-eval / knn / embed: folder runs (--folder, --test-folder, held-out split, classes mapped by name), output
paths checked before any computation, atomic writes, --download and --skip-corrupt."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simclr_lib.runs.registry
from simclr_lib import data as D
from simclr_lib.cli.commands import main
from simclr_lib.config import SimCLRConfig

pytestmark = pytest.mark.usefixtures("one_thread")
COLOURS = {"a": (220, 30, 30), "b": (30, 220, 30), "c": (30, 30, 220), "d": (220, 220, 30)}


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory):
    """Decode caches in a temporary folder; figures without a display."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMCLR_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("MPLBACKEND", "Agg")
        yield


def _images(root: Path, classes=COLOURS, n: int = 10, seed: int = 0, flat: bool = False) -> Path:
    """``root/<class>/<i>.png`` (or ``root/<class>_<i>.png`` if ``flat``): 16 px noisy solid colours, all distinct."""
    rng = np.random.default_rng(seed)
    for cls, col in classes.items():
        for i in range(n):
            a = np.clip(np.array(col)[None, None] + rng.integers(-40, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            path = root / (f"{cls}_{i}.png" if flat else f"{cls}/{i}.png")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(path)
    return root


def _pretrain(folder: Path, out: Path) -> Path:
    from simclr_lib.train import pretrain

    pretrain(SimCLRConfig.smoke(dataset="folder", folder=str(folder), subset=None, batch_size=8, knn_every=0,
                                out_dir=str(out), device="cpu"))
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _images(tmp_path_factory.mktemp("data") / "labelled")


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory) -> Path:
    """A one-epoch run pre-trained on a labelled folder of 40 images in 4 classes."""
    return _pretrain(folder, tmp_path_factory.mktemp("runs") / "labelled")


def _cli(capsys, *argv: str) -> tuple[int, dict, str]:
    """main(argv): exit status, the JSON printed (or {}), stderr."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, json.loads(out) if rc == 0 else {}, err


def _one_line_error(rc: int, err: str) -> str:
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- (7), (8) folder runs: the run's own folder, a held-out split, --folder / --test-folder mapped by name ----------
def test_folder_run_evaluates_on_a_held_out_split(run, folder, capsys):
    rc, res, err = _cli(capsys, "knn", "--checkpoint", str(run), "--device", "cpu", "--k", "3")
    assert rc == 0, err
    assert 0 <= res["knn_top1"] <= 1
    held = res["held_out_split"]
    assert held["from"] == str(folder) and held["train_images"] == 32 and held["test_images"] == 8
    assert len(err.strip().splitlines()) == 1 and "held-out" in err and "--test-folder" in err
    rc, res, err = _cli(capsys, "linear-eval", "--checkpoint", str(run), "--device", "cpu")
    assert rc == 0, err
    assert 0 <= res["torch"]["top1"] <= 1 and res["held_out_split"]["test_images"] == 8


def test_held_out_split_is_balanced_seeded_and_disjoint(folder):
    train, test, held = D.folder_eval_splits(folder, seed=3, progress=False)
    assert torch.bincount(test.labels).tolist() == [2, 2, 2, 2] and torch.bincount(train.labels).tolist() == [8] * 4
    rows = {bytes(x.numpy()) for x in train.images}
    assert not any(bytes(x.numpy()) in rows for x in test.images)  # never tests on training images
    again, other = D.folder_eval_splits(folder, seed=3, progress=False), \
        D.folder_eval_splits(folder, seed=4, progress=False)
    assert torch.equal(again[1].images, test.images) and not torch.equal(other[1].images, test.images)
    assert held == dict(again[2]) and held["seed"] == 3 and held["fraction"] == D.HOLDOUT_FRACTION


def test_test_folder_classes_map_by_name(run, folder, tmp_path, capsys):
    test = tmp_path / "test"
    for cls in ("c", "d"):  # a test folder with two of the four classes: c and d must keep labels 2 and 3
        shutil.copytree(folder / cls, test / cls)
    train, mapped, held = D.folder_eval_splits(folder, test_folder=test, progress=False)
    assert held is None and mapped.classes == train.classes == list("abcd")
    assert sorted(set(mapped.labels.tolist())) == [2, 3]
    rc, res, err = _cli(capsys, "knn", "--checkpoint", str(run), "--device", "cpu", "--k", "1",
                        "--folder", str(folder), "--test-folder", str(test))
    assert rc == 0, err
    assert res["knn_top1"] == 1.0 and "held_out_split" not in res  # the test images are copies of train images
    rc, res, err = _cli(capsys, "knn", "--checkpoint", str(run), "--device", "cpu", "--k", "1",
                        "--test-folder", str(test))  # the run's own folder as the train images
    assert rc == 0 and res["knn_top1"] == 1.0, err


def test_test_class_missing_from_train_is_one_line_error(run, folder, tmp_path, capsys):
    test = _images(tmp_path / "test", {"a": (220, 30, 30), "zebra": (9, 9, 9)}, n=2)
    rc, _, err = _cli(capsys, "knn", "--checkpoint", str(run), "--device", "cpu", "--test-folder", str(test))
    assert "zebra" in _one_line_error(rc, err) and str(folder) in err


def test_unlabelled_folders_are_one_line_errors(run, folder, tmp_path, capsys):
    flat = _images(tmp_path / "flat", n=2, flat=True)
    for extra in (("--folder", str(flat)), ("--test-folder", str(flat))):
        rc, _, err = _cli(capsys, "embed", "--checkpoint", str(run), "--device", "cpu", *extra,
                          "--out", str(tmp_path / "x.png"))
        assert "--folder" in _one_line_error(rc, err) and "class" in err
    flat_run = _pretrain(flat, tmp_path / "flat_run")  # pre-trained on unlabelled images: evaluating needs --folder
    rc, _, err = _cli(capsys, "knn", "--checkpoint", str(flat_run), "--device", "cpu")
    assert "--folder" in _one_line_error(rc, err) and "--test-folder" in err
    rc, res, err = _cli(capsys, "knn", "--checkpoint", str(flat_run), "--device", "cpu", "--k", "3",
                        "--folder", str(folder))
    assert rc == 0 and res["held_out_split"]["test_images"] == 8, err


def test_missing_run_folder_names_the_flag(run, folder, tmp_path, capsys):
    rc, _, err = _cli(capsys, "knn", "--checkpoint", str(run), "--device", "cpu", "--folder", str(tmp_path / "no"))
    assert "--folder" in _one_line_error(rc, err) and str(tmp_path / "no") in err


# --- (4) output paths checked before any computation; atomic writes -------------------------------------------------
@pytest.fixture
def loads(monkeypatch) -> list:
    """Records each checkpoint load (the first step of any computation) and stops there."""
    calls = []

    def record(*a, **k):
        calls.append(a)
        raise RuntimeError("stopped at loading the checkpoint")
    monkeypatch.setattr(simclr_lib.runs.registry, "pretrained", record)
    return calls


@pytest.mark.parametrize("command,flag,kind", [
    ("knn", "--out", "dir"), ("knn", "--out", "below_file"), ("knn", "--out", "read_only"),
    ("linear-eval", "--out", "dir"), ("linear-eval", "--out", "read_only"),
    ("embed", "--out", "dir"), ("embed", "--out", "bad_format"), ("embed", "--out", "read_only"),
    ("embed", "--projector", "file"), ("embed", "--projector", "below_file"), ("embed", "--projector", "read_only"),
])
def test_bad_output_paths_fail_before_computing(command, flag, kind, tmp_path, capsys, loads):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    path = {"dir": tmp_path / "dir", "file": tmp_path / "file", "below_file": tmp_path / "file" / "sub" / "x.json",
            "read_only": ro / "sub" / "x.png", "bad_format": tmp_path / "x.notaformat"}[kind]
    try:
        rc, _, err = _cli(capsys, command, "--checkpoint", str(tmp_path / "run"), flag, str(path))
    finally:
        ro.chmod(0o755)
    assert flag in _one_line_error(rc, err) and str(path) in err and not loads


def test_embed_projector_into_an_existing_folder_is_fine(tmp_path, capsys, loads):
    (tmp_path / "proj").mkdir()
    rc, _, err = _cli(capsys, "embed", "--checkpoint", str(tmp_path), "--projector", str(tmp_path / "proj"),
                      "--out", str(tmp_path / "new" / "x.png"))
    assert loads and "stopped at loading" in _one_line_error(rc, err)  # the paths passed the checks


def test_results_are_written_atomically(run, tmp_path, capsys):
    out = tmp_path / "knn.json"
    out.write_text("an older result")
    rc, res, err = _cli(capsys, "knn", "--checkpoint", str(run), "--device", "cpu", "--k", "3", "--out", str(out))
    assert rc == 0 and json.loads(out.read_text()) == res and os.listdir(tmp_path) == ["knn.json"], err


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from simclr_lib.teaching.plots import save_figure

    fig_path = tmp_path / "fig.png"
    fig_path.write_bytes(b"old figure")

    def broken_savefig(self, fname, **kw):  # writes half a file, then fails (a full disk)
        (open(fname, "wb") if isinstance(fname, (str, Path)) else fname).write(b"half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="No space"):
        save_figure(Figure(), fig_path)
    assert fig_path.read_bytes() == b"old figure" and os.listdir(tmp_path) == ["fig.png"]
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"cannot write \.notaformat"):
        save_figure(Figure(), tmp_path / "x.notaformat")
    assert save_figure(Figure(), tmp_path / "noext") == tmp_path / "noext.png" and (tmp_path / "noext.png").is_file()


# --- (5) --download and --skip-corrupt ------------------------------------------------------------------------------
def test_skip_corrupt_flag(run, folder, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    common = ("knn", "--checkpoint", str(run), "--device", "cpu", "--k", "3", "--folder", str(bad))
    rc, _, err = _cli(capsys, *common)
    assert "--skip-corrupt" in _one_line_error(rc, err) and "broken.png" in err
    with pytest.warns(UserWarning, match="broken.png"):
        rc, res, err = _cli(capsys, *common, "--skip-corrupt")
    assert rc == 0 and res["held_out_split"]["train_images"] + res["held_out_split"]["test_images"] == 40, err


def test_download_flag_reaches_load_dataset(tmp_path, capsys, monkeypatch):
    from simclr_lib.config import build_model

    cfg = SimCLRConfig.smoke(dataset="cifar10", data_dir=str(tmp_path / "empty"))
    monkeypatch.setattr(simclr_lib.runs.registry, "pretrained", lambda *a, **k: (build_model(cfg).eval(), cfg, {}))
    calls = []
    monkeypatch.setattr(D.releases, "_download", lambda *a: calls.append(a) or "OSError: offline")  # _locate's
    rc, _, err = _cli(capsys, "knn", "--checkpoint", str(tmp_path), "--device", "cpu")
    assert "--download" in _one_line_error(rc, err) and not calls
    rc, _, err = _cli(capsys, "knn", "--checkpoint", str(tmp_path), "--device", "cpu", "--download")
    assert "download=True failed (OSError: offline)" in _one_line_error(rc, err) and calls
