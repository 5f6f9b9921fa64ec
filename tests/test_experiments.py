"""experiments.py: settings x seeds on the offline shapes set, scored on a validation split (figures: test_plots.py)."""
import math

import pytest
import torch

from simclr_lib.teaching import experiments as ex
from simclr_lib.config import SimCLRConfig

pytestmark = pytest.mark.usefixtures("one_thread")
SCALE = ex.Scale(n_pretrain=64, n_train=96, epochs=1, batch_size=32, subset=160)


@pytest.fixture(scope="module")
def data():
    return ex.load_experiment_data("shapes", None, SCALE)


def _base(tmp_path) -> SimCLRConfig:
    return ex.experiment_config(SCALE, dataset="shapes", image_size=32, device="cpu", out_dir=str(tmp_path / "runs"))


def test_data_comes_from_a_validation_split_of_the_training_images(data):
    from simclr_lib.data import load_dataset, validation_split

    train = load_dataset("shapes", "train", subset=160, progress=False)
    pool, val = validation_split(train, fraction=0.1, seed=0)
    assert torch.equal(data.val.images, val.images) and torch.equal(data.val.labels, val.labels)
    assert torch.equal(data.pretrain.images, pool.images[:64]) and torch.equal(data.train.images, pool.images[:96])
    flat = lambda x: {bytes(im.numpy()) for im in x}  # noqa: E731
    assert not flat(data.val.images) & flat(pool.images), "validation images leaked into the training part"
    assert sorted(set(data.val.labels.tolist())) == list(range(train.num_classes))  # class-balanced


def test_setting_config_sqrt_lr_rule_and_ops():
    base = ex.experiment_config(ex.SCALES["quick"])
    cfg, ops = ex.setting_config(base, {"batch_size": 1024})
    assert cfg.batch_size == 1024 and ops is None
    assert math.isclose(cfg.peak_lr(), base.peak_lr() * math.sqrt(1024 / base.batch_size))
    cfg, ops = ex.setting_config(base, {"batch_size": 512, "lr": 0.5, "ops": ["crop", "flip"]})
    assert cfg.peak_lr() == 0.5 and ops == ("crop", "flip")
    assert ex.run_name(base, base, None) == "base_seed0"
    assert ex.run_name(base, *ex.setting_config(base, {"temperature": base.temperature})) == "base_seed0"
    assert ex.run_name(base, *ex.setting_config(base.replace(seed=1), {"ops": ("crop",)})) == "ops=crop_seed1"


def test_run_settings_seeds_shared_base_and_folders(data, tmp_path):
    base, cache = _base(tmp_path), {}
    settings = {"same as base": {"temperature": 0.1}, "τ = 0.5": {"temperature": 0.5}}
    rows = ex.run_settings(base, settings, data, seeds=(0, 1), cache=cache, progress=False)
    assert [(r["setting"], r["seed"]) for r in rows] == [("same as base", 0), ("same as base", 1), ("τ = 0.5", 0),
                                                          ("τ = 0.5", 1)]
    assert [r["run"] for r in rows] == ["base_seed0", "base_seed1", "temperature=0.5_seed0", "temperature=0.5_seed1"]
    for r in rows:
        assert all(0 <= r[k] <= 100 for k in ("knn_h", "probe_h", "knn_z", "probe_z")) and math.isfinite(r["loss"])
        assert r["steps"] == 2 and r["seconds"] >= r["train_seconds"] > 0
        assert (tmp_path / "runs" / r["run"] / "checkpoints" / "last.pt").is_file()
    assert rows[0]["loss"] != rows[1]["loss"]  # the seeds differ
    again = ex.run_settings(base, {"base": {}}, data, seeds=(1,), cache=cache, progress=False)  # from the cache
    assert again[0]["seconds"] == rows[1]["seconds"] and len(cache) == 4


def test_random_init_rows(data, tmp_path):
    rows = ex.random_init(_base(tmp_path), data, seeds=(0, 1))
    assert [r["setting"] for r in rows] == ["random init"] * 2 and rows[0]["probe_h"] >= 0
    assert rows[0]["knn_z"] != rows[1]["knn_z"] or rows[0]["probe_z"] != rows[1]["probe_z"]


def test_summarize_effect_and_describe():
    rows = [dict(setting="a", seed=0, acc=50.0), dict(setting="a", seed=1, acc=54.0),
            dict(setting="b", seed=0, acc=49.0), dict(setting="b", seed=1, acc=51.0),
            dict(setting="c", seed=0, acc=40.0), dict(setting="c", seed=1, acc=42.0)]
    s = ex.summarize(rows, "acc")
    assert [x["setting"] for x in s] == ["a", "b", "c"]
    assert s[0] == dict(setting="a", mean=52.0, lo=50.0, hi=54.0, values=[50.0, 54.0])
    assert ex.effect(rows, "a", "b", "acc") == dict(diff=2.0, separated=False)  # 50 < 51: overlapping seeds
    assert ex.effect(rows, "a", "c", "acc") == dict(diff=11.0, separated=True)
    assert ex.effect(rows, "c", "a", "acc") == dict(diff=-11.0, separated=True)
    assert ex.describe(rows, "c", "a", "acc") == "c − a: -11.0 points (seeds separate)"


def test_effects_are_valid_settings():
    base = ex.experiment_config(ex.SCALES["quick"])
    from simclr_lib.augment import OPS

    for section in ex.SECTIONS:
        for changes in ex.settings(section, ex.SCALES["quick"]).values():
            cfg, ops = ex.setting_config(base, changes)  # every field exists and validates
            assert ops is None or set(ops) <= set(OPS)
    names = [ex.run_name(base, *ex.setting_config(base, c)) for c in ex.EFFECTS["temperature"].values()]
    assert names.count("base_seed0") == 1  # the base temperature is one of the settings, run once


def test_settings_batch_sizes_follow_the_scale_and_one_is_the_base():
    for name, scale in ex.SCALES.items():
        sizes = ex.settings("batch size", scale)
        assert list(sizes) == [str(b) for b in scale.batch_sizes] and scale.batch_size in scale.batch_sizes, name
    assert ex.settings("temperature", ex.SCALES["quick"]) is ex.EFFECTS["temperature"]
    with pytest.raises(ValueError, match="unknown experiment 'colour'.*augmentation, temperature, batch size"):
        ex.settings("colour", ex.SCALES["quick"])


def test_quick_scale_is_the_series_recipe_planned_in_minutes():
    from simclr_lib.config import SERIES_RECIPE
    from simclr_lib.teaching.notebook import SERIES_QUICK

    cfg = ex.experiment_config(ex.SCALES["quick"])
    assert cfg.minutes == ex.SCALES["quick"].minutes > 0 and cfg.epochs >= 30  # epochs only a cap
    assert all(getattr(cfg, k) == v for k, v in SERIES_RECIPE.items())  # notebook 03's recipe, one definition
    assert cfg.batch_size == SERIES_QUICK["batch_size"]
    long = ex.experiment_config(ex.SCALES["long"])  # the committed sweep's recipe is unchanged (reproducible)
    assert long.minutes is None and long.epochs == 30 and long.small_width == 32 and long.batch_size == 256
    assert ex.experiment_config(ex.SCALES["paper"]).minutes is None


def test_a_minutes_scale_run_ends_inside_its_budget(data, tmp_path):
    scale = ex.Scale(n_pretrain=64, n_train=96, epochs=50, minutes=0.05, batch_size=32, subset=160)
    base = ex.experiment_config(scale, dataset="shapes", image_size=32, device="cpu", out_dir=str(tmp_path / "r"))
    row = ex.run_settings(base, {"base": {}}, data, seeds=(0,), progress=False)[0]
    assert 0 < row["train_seconds"] < 60 * 0.05 + 2 and 0 < row["steps"] < 50 * 2  # time, not the epoch cap, ended it


def test_planned_runs_counts_the_base_once_per_seed():
    scale = ex.SCALES["quick"]
    base = ex.experiment_config(scale)
    names = ex.planned_runs(base, scale)
    assert len(names) == len(set(names)) == 16 and names.count("base_seed0") == 1  # 8 + 4 + 4: 2 seeds each
    assert ex.planned_runs(base, scale, ["temperature"]) == ["base_seed0", "base_seed1", "temperature=0.5_seed0",
                                                             "temperature=0.5_seed1", "temperature=1_seed0",
                                                             "temperature=1_seed1"]
