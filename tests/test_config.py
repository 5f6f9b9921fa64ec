"""SimCLRConfig: paper defaults, presets, validation with one-line errors, round trip."""
import dataclasses

import pytest

from simclr_lib import config, data, models, optim, runtime
from simclr_lib.config import CHOICES, SimCLRConfig, field_comments


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


def test_the_series_run_is_planned_in_minutes(tmp_path):
    """Notebook 03 trains for a stated number of minutes in every mode (epochs is only a cap)."""
    import torch

    from simclr_lib.teaching.notebook import SERIES_MINUTES, SERIES_QUICK, Setup, series_config

    q = SimCLRConfig.quick()
    assert (q.temperature, q.peak_lr(), q.min_scale) == (0.1, 2.0, 0.2)
    for mode in ("smoke", "quick", "full"):
        c = series_config(Setup(mode, torch.device("cpu"), None, "cifar10", tmp_path))
        assert c.minutes == SERIES_MINUTES[mode] and c.minutes <= 15
    c = series_config(Setup("quick", torch.device("cpu"), None, "cifar10", tmp_path))
    assert (c.temperature, c.batch_size, c.small_width, c.min_scale) == (
        SERIES_QUICK["temperature"], SERIES_QUICK["batch_size"], SERIES_QUICK["small_width"], 0.08)
    assert series_config(Setup("quick", torch.device("cpu"), None, "cifar10", tmp_path), epochs=3).epochs == 3


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


def test_option_lists_live_next_to_their_implementation():
    """One definition each: config imports the lists it validates against."""
    assert config.DATASETS is data.DATASETS and config.ARCHS is models.ARCHS
    assert config.OPTIMIZERS is optim.OPTIMIZERS and config.LR_SCALINGS is optim.LR_SCALINGS
    assert config.PRECISIONS is runtime.PRECISIONS
    assert {k: v for k, v in CHOICES.items() if k != "augment_backend"} == dict(
        dataset=data.DATASETS, arch=models.ARCHS, optimizer=optim.OPTIMIZERS, lr_scaling=optim.LR_SCALINGS,
        precision=runtime.PRECISIONS)


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_unknown_choice_names_the_allowed_values(name):
    with pytest.raises(ValueError) as e:
        SimCLRConfig(**{name: "nope"})
    assert str(e.value) == f"{name}='nope' is unknown; choose one of {', '.join(CHOICES[name])}"


def test_implementations_name_the_allowed_values():
    import torch

    for call, allowed in ((lambda: optim.scaled_lr(256, "cube"), optim.LR_SCALINGS),
                          (lambda: optim.build_optimizer(torch.nn.Linear(2, 2), "rmsprop", 0.1), optim.OPTIMIZERS),
                          (lambda: runtime.resolve_precision("fp8", torch.device("cpu")), runtime.PRECISIONS),
                          (lambda: models.build_encoder("vit"), models.ARCHS)):
        with pytest.raises(ValueError, match=f"choose one of {', '.join(allowed)}$"):
            call()


def test_every_field_has_a_comment():
    """The trailing comments are the CLI's help texts (``python -m simclr_lib pretrain --help``)."""
    comments = field_comments()
    assert set(comments) == {f.name for f in dataclasses.fields(SimCLRConfig)}
    assert all(comments.values())
    assert comments["epochs"] == "passes over the training images"


def test_field_comments_without_source(monkeypatch):
    """A bytecode-only install has no source: no help texts, but nothing breaks."""
    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(config.inspect, "getsource", no_source)
    assert field_comments.__wrapped__() == {}
