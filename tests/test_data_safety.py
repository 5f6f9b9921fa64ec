"""A run is never lost, mixed or silently wrong (issue 10): class maps across splits, the data check without
decoding, the content-keyed decode cache, safe CIFAR unpickling, the scale switch, corrupt shared checkpoints and
the smoke default of plain ``pytest``."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr_lib import data as D
from simclr_lib.cli import quickstart as Q
from simclr_lib.data import files, find_dataset, load_dataset
from simclr_lib.teaching import notebook as NB

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMCLR_CACHE_DIR", str(tmp_path / "cache"))


def _one_line(msg: str) -> str:
    assert "\n" not in msg, msg
    return msg


def _split(root: Path, classes: dict[str, tuple[int, int, int]], fmt: str = "png") -> Path:
    """``root/<class>/0.<fmt>``, one 8x8 image of the class's colour each."""
    for cls, colour in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), colour).save(root / cls / f"0.{fmt}")
    return root


COLOURS = {"ant": (200, 0, 0), "bee": (0, 200, 0), "cow": (0, 0, 200), "dog": (90, 90, 90)}


# --- 8: class folders are mapped by name across splits --------------------------------------------------------------
def test_test_split_missing_a_class_keeps_the_train_labels(tmp_path):
    _split(tmp_path / "cifar10" / "train", {k: COLOURS[k] for k in ("ant", "bee", "cow")})
    _split(tmp_path / "cifar10" / "test", {k: COLOURS[k] for k in ("ant", "cow")})
    train = load_dataset("cifar10", "train", tmp_path, progress=False)
    test = load_dataset("cifar10", "test", tmp_path, progress=False)
    assert test.classes == train.classes == ["ant", "bee", "cow"]
    by_colour = {tuple(img[:, 4, 4].tolist()): int(y) for img, y in zip(test.images, test.labels)}
    assert by_colour == {COLOURS["ant"]: 0, COLOURS["cow"]: 2}  # cow keeps label 2, as in train


def test_test_split_with_a_class_train_lacks_is_a_one_line_error(tmp_path):
    _split(tmp_path / "cifar10" / "train", {k: COLOURS[k] for k in ("ant", "cow")})
    _split(tmp_path / "cifar10" / "test", COLOURS)
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("cifar10", "test", tmp_path, progress=False)
    msg = _one_line(str(e.value))
    assert "bee, dog" in msg and "cifar10/train" in msg


# --- 9: the data check: every split, files only, never decoding -----------------------------------------------------
def test_available_names_the_missing_split(tmp_path):
    _split(tmp_path / "cifar10" / "test", COLOURS)
    ok, why = D.available("cifar10", tmp_path)
    assert not ok and "cifar10/train" in _one_line(why) and "missing" in why and str(tmp_path) in why
    assert D.available("cifar10", tmp_path, splits=("test",)) == (True, "")
    assert D.available("shapes", tmp_path) == (True, "")
    (tmp_path / "cifar10" / "train" / "ant").mkdir(parents=True)
    ok, why = D.available("cifar10", tmp_path)
    assert not ok and "ant holds no images" in _one_line(why)


def test_available_checks_the_batch_files(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_4", "data_batch_5", "test_batch"):
        (root / name).write_bytes(b"x")
    assert D.available("cifar10", tmp_path, splits=("test",)) == (True, "")
    ok, why = D.available("cifar10", tmp_path)
    assert not ok and "data_batch_3" in _one_line(why) and str(root) in why


def test_find_dataset_checks_train_too_and_prints_why(tmp_path, monkeypatch, capsys):
    _split(tmp_path / "cifar10" / "test", COLOURS)
    name, why = find_dataset(str(tmp_path))
    assert name == "shapes" and "cifar10/train" in _one_line(why) and "missing" in why

    class Stop(Exception):
        pass

    def stop(cfg, **kw):
        raise Stop

    monkeypatch.setattr(Q, "pretrain", stop)
    with pytest.raises(Stop):
        Q.run_quickstart(str(tmp_path / "run"), data_dir=str(tmp_path), smoke=True, progress=False)
    out = capsys.readouterr().out
    assert "pre-training on shapes" in out and "cifar10/train" in out and "missing" in out
    s = NB.setup(smoke=True, data_dir=str(tmp_path))
    assert s.dataset == "shapes" and "cifar10/train" in capsys.readouterr().out


def test_a_corrupt_jpeg_does_not_switch_data_sets(tmp_path):
    _split(tmp_path / "cifar10" / "train", COLOURS, "jpg")
    _split(tmp_path / "cifar10" / "test", COLOURS, "jpg")
    (tmp_path / "cifar10" / "test" / "ant" / "0.jpg").write_bytes(b"\xff\xd8\xff truncated")
    assert find_dataset(str(tmp_path)) == ("cifar10", "")
    with pytest.raises(ValueError, match="cannot decode image .*ant.0.jpg"):  # found at decode time, named
        load_dataset("cifar10", "test", tmp_path, progress=False)


# --- 10: the decode cache: keyed on content, and optional ----------------------------------------------------------
def test_cache_is_not_served_stale_after_a_same_size_same_mtime_replacement(tmp_path, monkeypatch):
    root = _split(tmp_path / "imgs", {"a": (10, 20, 30), "b": (40, 50, 60)}, "bmp")
    decodes = []
    real = files._decode_files
    monkeypatch.setattr(files, "_decode_files", lambda *a, **k: decodes.append(1) or real(*a, **k))
    first = load_dataset("folder", folder=root, progress=False)
    assert len(decodes) == 1  # a miss: decoded
    f = root / "a" / "0.bmp"
    st = os.stat(f)
    Image.new("RGB", (8, 8), (250, 1, 1)).save(f)  # like cp -p / rsync -t / tar x: same size, same mtime
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(f).st_size == st.st_size and os.stat(f).st_mtime_ns == st.st_mtime_ns
    second = load_dataset("folder", folder=root, progress=False)
    assert len(decodes) == 2 and tuple(second.images[0, :, 0, 0].tolist()) == (250, 1, 1)  # a miss: decoded
    assert torch.equal(second.images[1], first.images[1])
    third = load_dataset("folder", folder=root, progress=False)
    assert len(decodes) == 2 and torch.equal(third.images, second.images)  # unchanged again: a hit


def test_a_failing_cache_write_warns_and_returns_the_data(tmp_path, monkeypatch):
    root = _split(tmp_path / "imgs", {"a": (10, 20, 30)}, "png")

    def full_disk(obj, path):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0\nfile write failed")

    monkeypatch.setattr(files, "atomic_torch_save", full_disk)
    with pytest.warns(UserWarning) as record:
        d = load_dataset("folder", folder=root, progress=False)
    assert len(d) == 1 and tuple(d.images[0, :, 0, 0].tolist()) == (10, 20, 30)
    msg = _one_line(str(record[0].message))
    assert str(tmp_path / "cache") in msg and "RuntimeError" in msg


# --- 11: CIFAR batches are unpickled with an allow-list --------------------------------------------------------------
class _Planted:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"batch", b"labels": [int(y) for y in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def _cifar_dir(root: Path, protocol: int, test_batch=None) -> Path:
    batches = root / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        obj = test_batch if name == "test_batch" and test_batch is not None else _batch(4, i)
        (batches / name).write_bytes(pickle.dumps(obj, protocol=protocol))
    return batches


def test_a_planted_batch_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    batches = _cifar_dir(tmp_path / "d", 2, test_batch={b"data": _Planted(marker), b"labels": [0]})
    with pytest.raises(ValueError) as e:
        load_dataset("cifar10", "test", tmp_path / "d", progress=False)
    msg = _one_line(str(e.value))
    assert str(batches / "test_batch") in msg and "posix.system" in msg
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_batches_load_under_the_allow_list(tmp_path, protocol):
    _cifar_dir(tmp_path, protocol)
    d = load_dataset("cifar10", "test", tmp_path, progress=False)
    ref = _batch(4, 5)
    assert torch.equal(d.images.reshape(4, -1), torch.from_numpy(ref[b"data"]))
    assert d.labels.tolist() == ref[b"labels"]


def test_a_python2_style_batch_loads(tmp_path):
    """The real files: a Python 2 pickle whose arrays say numpy.core.multiarray._reconstruct, data as str."""
    class Arr:
        def __init__(self, a: np.ndarray):
            self.a = a

        def __reduce__(self):
            from numpy._core.multiarray import _reconstruct
            return _reconstruct, (np.ndarray, (0,), b"b"), (1, self.a.shape, self.a.dtype, False,
                                                            self.a.tobytes().decode("latin1"))

    rows = np.random.default_rng(0).integers(0, 256, (2, 3072), dtype=np.uint8)
    raw = pickle.dumps({"data": Arr(rows), "labels": [3, 7]}, protocol=2)
    _cifar_dir(tmp_path, 2)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(raw.replace(b"numpy._core", b"numpy.core"))
    d = load_dataset("cifar10", "test", tmp_path, progress=False)
    assert torch.equal(d.images.reshape(2, -1), torch.from_numpy(rows)) and d.labels.tolist() == [3, 7]


def test_a_truncated_batch_is_a_one_line_error(tmp_path):
    batches = _cifar_dir(tmp_path, 2)
    raw = (batches / "test_batch").read_bytes()
    (batches / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError) as e:
        load_dataset("cifar10", "test", tmp_path, progress=False)
    assert str(batches / "test_batch") in _one_line(str(e.value))


# --- 12: the scale switch and a corrupt shared checkpoint ------------------------------------------------------------
@pytest.mark.parametrize("value,smoke", [("no", False), ("off", False), ("false", False), ("FALSE", False),
                                         ("0", False), ("", False), ("1", True), ("yes", True), ("TRUE", True),
                                         ("On", True)])
def test_simclr_smoke_values(monkeypatch, value, smoke):
    monkeypatch.setenv("SIMCLR_SMOKE", value)
    monkeypatch.setenv("SIMCLR_MODE", "quick")
    assert NB.resolve_mode() == ("smoke" if smoke else "quick")


def test_simclr_smoke_garbage_and_mode_case(monkeypatch):
    monkeypatch.setenv("SIMCLR_SMOKE", "maybe")
    with pytest.raises(ValueError) as e:
        NB.resolve_mode()
    assert "SIMCLR_SMOKE='maybe'" in _one_line(str(e.value))
    monkeypatch.setenv("SIMCLR_SMOKE", "0")
    monkeypatch.setenv("SIMCLR_MODE", "FULL")
    assert NB.resolve_mode() == "full"
    assert NB.resolve_mode(mode="Quick") == "quick"
    monkeypatch.setenv("SIMCLR_MODE", "fast")
    with pytest.raises(ValueError, match="SIMCLR_MODE='fast' is unknown"):
        NB.resolve_mode()


def test_a_corrupt_shared_checkpoint_is_kept_aside_and_retrained(tmp_path, monkeypatch, capsys):
    from simclr_lib import train
    from simclr_lib.config import build_model
    from simclr_lib.runs.checkpoint import save_checkpoint

    s = NB.Setup("smoke", torch.device("cpu"), None, "shapes", tmp_path / "run")
    s.checkpoint.parent.mkdir(parents=True)
    s.checkpoint.write_bytes(b"PK\x03\x04 truncated")
    calls = []

    def fake_pretrain(cfg, **kw):
        calls.append(cfg)
        save_checkpoint({"model": build_model(cfg).state_dict(), "config": cfg.to_dict(), "history": [{"e": 1}],
                         "epoch": 1, "step": 4},
                        s.checkpoint)

    monkeypatch.setattr(train, "pretrain", fake_pretrain)
    model, cfg, history = NB.series_model(s)
    assert len(calls) == 1 and history == [{"e": 1}] and not model.training
    assert (s.checkpoint.parent / "last.pt.corrupt").read_bytes() == b"PK\x03\x04 truncated"
    notice = [line for line in capsys.readouterr().out.splitlines() if "last.pt.corrupt" in line]
    assert len(notice) == 1 and "could not be read" in notice[0] and "retraining" in notice[0]


# --- 13: plain ``pytest`` runs at the smoke scale --------------------------------------------------------------------
def _root_conftest(config: pytest.Config):
    """The root conftest.py as pytest loaded it (the module object that ran at start-up)."""
    for plugin in config.pluginmanager.get_plugins():
        if Path(getattr(plugin, "__file__", "") or "/").resolve() == ROOT / "conftest.py":
            return plugin
    pytest.fail(f"{ROOT / 'conftest.py'} was not loaded by pytest")


def test_root_conftest_defaults_to_smoke_unless_told_otherwise(pytestconfig):
    default = _root_conftest(pytestconfig).default_to_smoke
    for env, expected in [({}, "1"), ({"SIMCLR_MODE": "quick"}, None), ({"SIMCLR_SMOKE": "0"}, "0"),
                          ({"SIMCLR_SMOKE": "", "PATH": "/bin"}, "")]:
        env = dict(env)
        default(env)
        assert env.get("SIMCLR_SMOKE") == expected, env


def test_this_pytest_run_is_smoke_when_neither_variable_was_set(pytestconfig):
    before = _root_conftest(pytestconfig).ENV_BEFORE
    if before == {"SIMCLR_SMOKE": None, "SIMCLR_MODE": None}:
        assert os.environ.get("SIMCLR_SMOKE") == "1" and NB.resolve_mode() == "smoke"
    else:
        assert {k: os.environ.get(k) for k in before} == before  # an explicit choice is left alone
