"""The recipe knobs of the CPU sweep (issue 11, item 3): greyscale probability, small-encoder width and depth, the
``cpu`` preset of the shipped encoder, and the notebooks' switch between the shipped encoder and their own run."""
import types

import pytest
import torch

from simclr_lib import train
from simclr_lib.augment import SimCLRAugment
from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.models import SmallEncoder
from simclr_lib.teaching import notebook as NB


def _grey(views: torch.Tensor) -> torch.Tensor:
    """(N,) True where a view's three channels are equal (a greyscale view)."""
    return (views[:, 0] == views[:, 1]).all(dim=(1, 2)) & (views[:, 1] == views[:, 2]).all(dim=(1, 2))


@pytest.mark.parametrize("gray_p, expected", [(0.0, 0.0), (1.0, 1.0), (0.5, 0.5)])
def test_gray_p_sets_the_share_of_greyscale_views(gray_p, expected):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (400, 3, 32, 32), dtype=torch.uint8)
    aug = SimCLRAugment.from_config(SimCLRConfig.smoke(dataset="cifar10", gray_p=gray_p))
    assert aug.gray_p == gray_p
    share = _grey(aug(images, generator=torch.Generator().manual_seed(0))).float().mean().item()
    assert abs(share - expected) < 0.08


def test_small_width_and_depth_shape_the_encoder():
    model = build_model(SimCLRConfig.quick(small_width=48, small_depth=3))
    enc = model.encoder
    assert isinstance(enc, SmallEncoder) and model.feat_dim == enc.feat_dim == 384
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [48, 96, 192, 192, 192, 384, 384, 384]
    h, z = model.eval()(torch.rand(2, 3, 32, 32))
    assert h.shape == (2, 384) and z.shape == (2, 128)
    default = build_model(SimCLRConfig.quick()).encoder  # the defaults are the 1.1 M-parameter encoder as before
    assert [m.out_channels for m in default.modules() if isinstance(m, torch.nn.Conv2d)] == [32, 64, 128, 128, 256, 256]


def test_small_feat_dim_widens_h_with_one_1x1_conv_after_the_last_stage():
    model = build_model(SimCLRConfig.quick(small_width=16, small_feat_dim=512))
    enc = model.encoder
    assert model.feat_dim == enc.feat_dim == model.head.in_dim == 512
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 512]
    assert convs[-1].kernel_size == (1, 1) and convs[-1].in_channels == 128 and convs[-1].bias is None
    h, z = model.eval()(torch.rand(3, 3, 32, 32))
    assert h.shape == (3, 512) and z.shape == (3, 128) and (h >= 0).all()  # after BN and ReLU, then pooled
    # the same h as the stages by hand: last stage -> 1x1 conv -> BN -> ReLU -> global average pool
    x = enc.normalize(torch.rand(3, 3, 32, 32))
    stages = enc.features[:-1](x)
    widen = enc.features[-1]
    ref = torch.relu(widen[1](widen[0](stages))).mean(dim=(2, 3))
    assert torch.allclose(enc.features(x).mean(dim=(2, 3)), ref)
    assert build_model(SimCLRConfig.quick(small_width=16)).feat_dim == 128  # None: the last stage's channels


def test_view_size_makes_smaller_training_views_while_features_see_the_whole_image(tmp_path):
    smooth = torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4), size=32, mode="bilinear")  # little detail
    images = (255 * smooth).round().to(torch.uint8)
    cfg = SimCLRConfig.quick(small_width=8, small_feat_dim=64, view_size=24)
    assert cfg.image_size == 32
    aug = SimCLRAugment.from_config(cfg)
    views = aug(images, generator=torch.Generator().manual_seed(0))
    assert views.shape == (8, 3, 24, 24)
    # the same crop boxes and colour parameters as the 32 px views, only resized to 24 px
    ref = SimCLRAugment.from_config(cfg.replace(view_size=None))(images, generator=torch.Generator().manual_seed(0))
    assert ref.shape == (8, 3, 32, 32)
    small = torch.nn.functional.interpolate(ref, size=24, mode="bilinear", antialias=True)
    assert (small - views).abs().mean() < 0.02
    model = build_model(cfg).eval()
    assert model(views)[0].shape == model(images.float() / 255)[0].shape == (8, 64)  # h at either size
    assert SimCLRAugment.from_config(SimCLRConfig.quick()).size == 32  # None: the image size
    from simclr_lib.data.images import ImageData
    data = ImageData(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8), None, [], "random")
    run = train.setup_run(cfg.replace(batch_size=16, out_dir=str(tmp_path), tensorboard=False, progress=False,
                                      device="cpu"), data)
    assert run.augment.size == 24  # the training loop's views


@pytest.mark.parametrize("field, value", [("gray_p", 1.5), ("gray_p", -0.1), ("small_width", 0), ("small_depth", 0),
                                          ("small_feat_dim", 0), ("view_size", 0)])
def test_bad_recipe_values_are_refused_in_one_line(field, value):
    with pytest.raises(ValueError, match=field):
        SimCLRConfig(**{field: value})


def test_cli_flags_and_the_cpu_preset_reach_the_config(monkeypatch):
    from simclr_lib.cli import commands as cli

    seen = {}
    monkeypatch.setattr(train, "pretrain", lambda cfg, **kw: seen.setdefault("cfg", cfg) and
                        types.SimpleNamespace(metrics={}))
    assert cli.main(["pretrain", "--preset", "cpu", "--gray-p", "0.1", "--small-width", "48", "--small-depth", "3",
                     "--out", "unused"]) == 0
    cfg = seen["cfg"]
    assert (cfg.gray_p, cfg.small_width, cfg.small_depth) == (0.1, 48, 3)
    assert (cfg.dataset, cfg.subset, cfg.arch) == ("cifar10", None, "small")  # all 50,000 training images
    assert SimCLRConfig.cpu() == SimCLRConfig.from_dict(SimCLRConfig.cpu().to_dict())


def test_old_configs_without_the_new_fields_load_with_the_paper_defaults():
    d = SimCLRConfig.quick().to_dict()
    for k in ("gray_p", "small_width", "small_depth", "small_feat_dim", "view_size"):
        d.pop(k)
    cfg = SimCLRConfig.from_dict(d)
    assert (cfg.gray_p, cfg.small_width, cfg.small_depth, cfg.small_feat_dim, cfg.view_size) == (0.2, 32, 2, None, None)


def test_notebooks_study_the_shipped_encoder_in_quick_mode_or_without_a_full_run(monkeypatch, tmp_path):
    def setup(mode, dataset="cifar10"):
        return NB.Setup(mode, torch.device("cpu"), None, dataset, tmp_path)

    monkeypatch.delenv("SIMCLR_OWN", raising=False)
    assert NB.use_shipped(setup("quick"))
    assert not NB.use_shipped(setup("quick", "shapes")) and not NB.use_shipped(setup("smoke"))
    assert NB.use_shipped(setup("full"))  # Colab: notebook 03's checkpoint is on another machine
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert not NB.use_shipped(setup("full")) and NB.use_shipped(setup("quick"))  # 03 ran here: study that
    monkeypatch.setenv("SIMCLR_OWN", "1")
    assert not NB.use_shipped(setup("quick"))
    monkeypatch.setenv("SIMCLR_OWN", "maybe")
    with pytest.raises(ValueError, match="SIMCLR_OWN"):
        NB.use_shipped(setup("quick"))
