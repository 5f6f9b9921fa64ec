"""experiments.py: grids of short runs on the offline shapes set and the Fig. 5 table (figures: test_plots.py)."""
import math

import numpy as np
import pytest
import torch

from simclr_lib import experiments as ex
from simclr_lib import plots
from simclr_lib.config import SimCLRConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return ex.load_experiment_data("shapes", None, n_pretrain=64, n_train=64, n_test=32, image_size=16)


def _cfg(tmp_path) -> SimCLRConfig:
    return SimCLRConfig.smoke(subset=None, batch_size=32, image_size=16, knn_every=0, tensorboard=False,
                              out_dir=str(tmp_path / "runs"))


def test_data_is_shrunk_and_split(data):
    from simclr_lib.data import load_dataset, resize

    assert data.pretrain.images.shape == (64, 3, 16, 16) and data.test.images.shape == (32, 3, 16, 16)
    full = load_dataset("shapes", "train", subset=64, progress=False)  # 32 px
    test = load_dataset("shapes", "test", subset=32, progress=False)
    for part, ref in [(data.pretrain, full), (data.train, full), (data.test, test)]:  # the one resize (test_data.py)
        assert torch.equal(part.images, resize(ref.images, (16, 16))) and torch.equal(part.labels, ref.labels)
        assert part.name == f"{ref.name}@16px"


def test_run_grid_rows_and_out_dirs(data, tmp_path):
    rows = ex.run_grid(_cfg(tmp_path), {"temperature": [0.2, 0.5], "ops": [("crop", "jitter")]}, data,
                       evaluate=lambda m, c, d: ex.evaluate_run(m, c, d, spaces=("h", "z"), probe=False),
                       progress=False)
    assert [(r["temperature"], r["ops"]) for r in rows] == [(0.2, ("crop", "jitter")), (0.5, ("crop", "jitter"))]
    for r in rows:
        assert 0 <= r["knn_h"] <= 100 and 0 <= r["knn_z"] <= 100 and math.isfinite(r["loss"])
        assert r["steps"] == 2 and r["seconds"] >= r["train_seconds"] > 0
    assert (tmp_path / "runs" / "temperature=0.2_ops=crop+colour" / "checkpoints" / "last.pt").is_file()
    md = plots.markdown_table(rows, ["temperature", "ops", "knn_h"])  # op tuples as in the folder names
    assert md.splitlines()[2].startswith("| 0.2 | crop+colour | ")


def test_evaluate_run_probe_and_augment_from_config(data, tmp_path):
    from simclr_lib.augment import OPS, SimCLRAugment
    from simclr_lib.models import build_model

    cfg = _cfg(tmp_path)
    out = ex.evaluate_run(build_model(cfg), cfg, data)
    assert set(out) == {"knn_h", "probe_h"}
    full = SimCLRAugment.from_config(cfg)  # what run_one uses without ops (the config's own augmentation)
    assert full.ops == OPS and not full.blur_on and full.size == 16
    aug = SimCLRAugment.from_config(cfg, ("blur", "crop"))  # a grid's ops: blur exactly when listed
    assert aug.ops == ("crop", "blur") and aug.blur_on and aug.size == 16


def test_pairs_and_pair_matrix():
    ops = ["crop", "jitter", "blur"]
    pairs = ex.augmentation_pairs(ops)
    assert len(pairs) == 6 and pairs[:3] == [("crop",), ("jitter",), ("blur",)]
    rows = [dict(ops=p, acc=float(10 * i)) for i, p in enumerate(pairs)]
    m = ex.pair_matrix(rows, ops, "acc")
    want = np.array([[0, 30, 40], [30, 10, 50], [40, 50, 20]], dtype=float)
    np.testing.assert_allclose(m[:, :3], want)
    np.testing.assert_allclose(m[:, 3], want.mean(1))
