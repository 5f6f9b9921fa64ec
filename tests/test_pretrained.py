"""simclr_lib.runs.registry: registry names, local paths and URLs; hashes, the download cache, offline."""
import importlib
import shutil
import urllib.error

import pytest
import torch

import simclr_lib
from simclr_lib import SimCLRConfig
from simclr_lib.config import build_model
from simclr_lib.runs.checkpoint import save_checkpoint

PT = importlib.import_module("simclr_lib.runs.registry")  # `simclr_lib.runs.registry` is the function
pytestmark = pytest.mark.usefixtures("one_thread")
WRONG = "0" * 64


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A small checkpoint as a run writes it: random (seeded) weights, 2 epochs of history."""
    cfg = SimCLRConfig.smoke(out_dir="unused", device="cpu", knn_every=0, tensorboard=False)
    torch.manual_seed(0)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(dict(model=model.state_dict(), config=cfg.to_dict(), epoch=2, step=8,
                         history=[dict(epoch=1, loss=5.0), dict(epoch=2, loss=4.0)], version="0.2.0"), path)
    return path, PT.file_sha256(path), model.state_dict(), cfg


@pytest.fixture
def repo(tmp_path, monkeypatch, ckpt):
    """A stand-in repository root holding weights/tiny.pt, and an empty registry to fill."""
    root = tmp_path / "repo"
    (root / "weights").mkdir(parents=True)
    shutil.copy(ckpt[0], root / "weights" / "tiny.pt")
    monkeypatch.setattr(PT, "REPO_ROOT", root)
    monkeypatch.setattr(PT, "REGISTRY", {})
    return root


@pytest.fixture
def downloads(monkeypatch):
    """``torch.hub.download_url_to_file`` that copies a local file (``file://``) and counts its calls."""
    calls = []

    def fake(url, dst, hash_prefix=None, progress=True):
        calls.append(url)
        shutil.copy(url.removeprefix("file://"), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    return calls


def ckpt_history(path):
    """The history a checkpoint carries (the loader returns it in info)."""
    return torch.load(path, weights_only=True)["history"]


def same_weights(model, state):
    return all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def cache_files(data_dir):
    folder = data_dir / "pretrained"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_registry_name_loads_with_its_hash(repo, ckpt, tmp_path):
    path, sha, state, cfg = ckpt
    PT.REGISTRY["tiny"] = PT.Entry("weights/tiny.pt", sha, "small encoder, shapes, 2 epochs")
    model, got_cfg, info = simclr_lib.pretrained("tiny", data_dir=tmp_path / "data")
    assert same_weights(model, state) and not model.training and got_cfg == cfg
    assert info.pop("history") == ckpt_history(repo / "weights" / "tiny.pt")
    assert info == dict(name="tiny", path=str(repo / "weights" / "tiny.pt"), sha256=sha,
                        description="small encoder, shapes, 2 epochs", epoch=2, history_length=2, version="0.2.0")
    assert cache_files(tmp_path / "data") == []  # a committed file is read in place


def test_a_pip_install_without_the_repository_downloads_the_committed_file(repo, ckpt, tmp_path, monkeypatch,
                                                                          downloads):
    """Colab installs the package with pip: weights/ is not there, so the same file comes from the repository."""
    path, sha, state, _ = ckpt
    PT.REGISTRY["tiny"] = PT.Entry("weights/tiny.pt", sha, "tiny")
    served = tmp_path / "served"
    shutil.copytree(repo, served)
    shutil.rmtree(repo / "weights")
    monkeypatch.setattr(PT, "RAW_BASE", f"file://{served}/")
    model, _, info = simclr_lib.pretrained("tiny", data_dir=tmp_path / "data", progress=False)
    assert same_weights(model, state) and info["path"] == str(tmp_path / "data" / "pretrained" / "tiny.pt")
    assert downloads == [f"file://{served}/weights/tiny.pt"] and cache_files(tmp_path / "data") == ["tiny.pt"]
    simclr_lib.pretrained("tiny", data_dir=tmp_path / "data", progress=False)
    assert len(downloads) == 1  # cached


def test_raw_base_is_the_repository_of_the_notebooks():
    from simclr_lib.teaching.notebook import REPO_URL

    assert PT.RAW_BASE == REPO_URL.replace("github.com", "raw.githubusercontent.com") + f"/v{simclr_lib.__version__}/"


def test_wrong_hash_is_refused_before_loading(repo, ckpt, tmp_path, monkeypatch):
    path, sha, _, _ = ckpt
    loads = []
    monkeypatch.setattr(PT, "load_checkpoint", lambda *a, **k: loads.append(a))  # the one read of the file
    PT.REGISTRY["tiny"] = PT.Entry("weights/tiny.pt", WRONG, "bad hash")
    with pytest.raises(ValueError) as e:
        simclr_lib.pretrained("tiny", data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and WRONG in msg and sha in msg and "tiny.pt" in msg and "replace it" in msg
    assert loads == []
    with pytest.raises(ValueError, match="not 64 hex digits"):
        simclr_lib.pretrained(str(path), sha256="abc123")


def test_local_path_and_run_directory_load_without_a_hash(ckpt, tmp_path):
    path, sha, state, _ = ckpt
    model, _, info = simclr_lib.pretrained(path)
    assert same_weights(model, state) and info["sha256"] == sha and info["name"] == "tiny"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(path, run / "checkpoints" / "last.pt")
    assert same_weights(simclr_lib.pretrained(run)[0], state)
    with pytest.raises(ValueError, match=WRONG):  # an explicit hash is checked for paths too
        simclr_lib.pretrained(path, sha256=WRONG)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        simclr_lib.pretrained(tmp_path / "absent.pt")


def test_download_goes_to_the_cache_once(ckpt, tmp_path, downloads):
    path, sha, state, _ = ckpt
    url = f"file://{path}#sha256={sha}"
    model, _, info = simclr_lib.pretrained(url, data_dir=tmp_path, progress=False)
    assert same_weights(model, state) and len(downloads) == 1 and downloads[0] == f"file://{path}"
    (cached,) = cache_files(tmp_path)  # no temporary file left beside it
    assert cached.startswith("tiny-") and cached.endswith(".pt") and info["path"] == str(tmp_path / "pretrained" /
                                                                                          cached)
    model, _, _ = simclr_lib.pretrained(url, data_dir=tmp_path, progress=False)
    assert same_weights(model, state) and len(downloads) == 1  # reused, not downloaded again
    (tmp_path / "pretrained" / cached).write_bytes(b"damaged")
    with pytest.raises(ValueError, match=f"{sha} is expected; delete it to download it again"):
        simclr_lib.pretrained(url, data_dir=tmp_path, progress=False)


def test_a_download_with_the_wrong_hash_is_not_kept(ckpt, tmp_path, downloads, repo):
    PT.REGISTRY["remote"] = PT.Entry(f"file://{ckpt[0]}", WRONG, "published elsewhere")
    with pytest.raises(ValueError) as e:
        simclr_lib.pretrained("remote", data_dir=tmp_path, progress=False)
    assert "\n" not in str(e.value) and WRONG in str(e.value) and ckpt[1] in str(e.value) and "nothing was kept" \
        in str(e.value)
    assert len(downloads) == 1 and cache_files(tmp_path) == []


def test_real_download_of_a_file_url(ckpt, tmp_path):
    """torch.hub's own downloader, no network: a ``file://`` URL."""
    path, sha, state, _ = ckpt
    model, _, info = simclr_lib.pretrained(f"file://{path}", data_dir=tmp_path, progress=False, sha256=sha)
    assert same_weights(model, state) and info["sha256"] == sha and len(cache_files(tmp_path)) == 1


def test_offline_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        with open(dst, "wb") as f:
            f.write(b"half a file")
        with open(f"{dst}.abc.partial", "wb") as f:
            f.write(b"torch.hub's own temporary")
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    url = "https://example.org/weights/resnet18.pt"
    with pytest.raises(OSError) as e:
        simclr_lib.pretrained(url, data_dir=tmp_path, progress=False)
    msg = str(e.value)
    assert msg.startswith(f"cannot download {url} (offline); you are offline? put the file at {tmp_path}")
    assert "\n" not in msg and e.value.__suppress_context__ and "pass a local path" in msg
    assert cache_files(tmp_path) == []


def test_a_missing_file_url_is_the_same_one_line_error(tmp_path):
    with pytest.raises(OSError, match=r"^cannot download file:///nowhere/x\.pt \(.*\); you are offline\?") as e:
        simclr_lib.pretrained("file:///nowhere/x.pt", data_dir=tmp_path, progress=False)
    assert "\n" not in str(e.value) and cache_files(tmp_path) == []


def test_unknown_name_lists_the_known_names(repo):
    with pytest.raises(ValueError, match="known names: none yet, the registry is empty"):
        simclr_lib.pretrained("resnet18-cifar10")
    PT.REGISTRY.update(b=PT.Entry("weights/b.pt", WRONG, "b"), a=PT.Entry("weights/a.pt", WRONG, "a"))
    with pytest.raises(ValueError, match=r"^unknown pretrained checkpoint 'resnet18-cifar10' \(known names: a, b\)"):
        simclr_lib.pretrained("resnet18-cifar10")


def test_shipped_entries_are_well_formed():
    """Every real entry: a full hash and a one-line description."""
    for name, entry in PT.REGISTRY.items():
        assert PT._check_hex(entry.sha256, name) == entry.sha256, name
        assert entry.description and "\n" not in entry.description, name


def test_the_shipped_cpu_encoder_is_the_documented_run_and_loads_hash_checked():
    """weights/small-cifar10.pt: the registry entry, its sha256 file, its metrics and `--preset cpu` agree."""
    import json

    entry = PT.REGISTRY["small-cifar10"]
    weights = PT.REPO_ROOT / entry.url
    metrics = json.loads(weights.with_name("small-cifar10.metrics.json").read_text())
    assert weights.stat().st_size <= 10 * 2**20 and metrics["sha256"] == entry.sha256 == PT.file_sha256(weights)
    assert weights.with_name("small-cifar10.sha256").read_text().split()[0] == entry.sha256
    model, cfg, info = simclr_lib.pretrained("small-cifar10", progress=False)
    assert cfg.to_dict() == SimCLRConfig.cpu(progress=False).to_dict()  # python -m simclr_lib pretrain --preset cpu
    assert info["epoch"] == cfg.epochs == len(metrics["history"]) and not model.training
    assert metrics["trained"]["probe_top1"] > metrics["random_init"]["probe_top1"]
