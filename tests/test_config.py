"""SimCLRConfig: paper defaults, presets, validation with one-line errors, round trip."""
import pytest

from simclr_lib.config import SimCLRConfig


def test_paper_defaults():
    c = SimCLRConfig()
    assert (c.proj_out_dim, c.proj_layers, c.temperature, c.color_strength, c.blur, c.cifar_stem) == \
        (128, 2, 0.5, 0.5, False, True)
    assert (c.optimizer, c.momentum, c.lars_eta, c.weight_decay, c.min_scale) == ("lars", 0.9, 1e-3, 1e-6, 0.08)
    assert c.peak_lr() == pytest.approx(0.075 * 512 ** 0.5)
    assert SimCLRConfig(lr_scaling="linear", batch_size=1024).peak_lr() == pytest.approx(1.2)
    assert SimCLRConfig(lr=0.01).peak_lr() == 0.01


def test_presets():
    s = SimCLRConfig.smoke()
    assert s.dataset == "shapes" and s.subset <= 512 and s.epochs == 1
    assert SimCLRConfig.smoke(epochs=2).epochs == 2
    assert SimCLRConfig.quick().dataset == "cifar10"


def test_series_quick_keeps_paper_temperature_and_lr_rule(tmp_path):
    """Notebooks 02/03/06 teach tau = 0.5 and the sqrt LR rule; only the quickstart's preset tunes them."""
    import torch

    from simclr_lib.notebook import Setup, series_config

    q = SimCLRConfig.quick()
    assert (q.temperature, q.peak_lr()) == (0.2, 2.0)
    s = Setup("quick", torch.device("cpu"), None, "cifar10", tmp_path)
    c = series_config(s)
    assert (c.temperature, c.epochs, c.arch, c.subset) == (0.5, 15, q.arch, q.subset)
    assert c.peak_lr() == pytest.approx(0.075 * 256 ** 0.5)
    assert series_config(s, epochs=3).epochs == 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0), "temperature=0 must be > 0"),
    (dict(temperature=-0.1), "temperature"),
    (dict(batch_size=1), "batch_size=1 must be >= 2"),
    (dict(arch="vit"), "arch='vit' is unknown; choose one of resnet18"),
    (dict(dataset="imagenet"), "dataset='imagenet' is unknown"),
    (dict(optimizer="rmsprop"), "optimizer='rmsprop' is unknown; choose one of lars, sgd, adam, adamw"),
    (dict(n_views=1), "n_views"),
    (dict(lr=-1.0), "lr"),
    (dict(dataset="folder"), "folder="),
])
def test_validation_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        SimCLRConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_round_trip_and_unknown_field():
    c = SimCLRConfig.smoke(seed=3)
    assert SimCLRConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown config field"):
        SimCLRConfig.from_dict({"batchsize": 3})
