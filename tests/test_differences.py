"""Pin the facts of docs/differences.md (where simclr_lib deliberately differs from google-research/simclr).

The measurements live in benchmarks/measure_differences.py; these tests re-check the ones that can rot when the
library changes (loss scale, LARS exclusions, warm-up, crop sampler, head and init flags), in a few seconds.
"""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simclr_lib.augment import SimCLRAugment
from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.loss import nt_xent
from simclr_lib.models import ProjectionHead

pytestmark = pytest.mark.usefixtures("one_thread")

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "measure_differences.py"
_spec = importlib.util.spec_from_file_location("measure_differences", _PATH)
md = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(md)


def _reference_sum_naive(z: torch.Tensor, tau: float) -> float:
    """add_contrastive_loss by hand: for each view, the mean over its N anchors of -log softmax of the positive
    among [the other view's N rows, this view's other N-1 rows]; the two means are added."""
    z = F.normalize(z.double(), dim=1)
    n = z.shape[0] // 2
    total = 0.0
    for view in (0, 1):
        losses = []
        for i in range(n):
            anchor = z[view * n + i]
            others = [z[(1 - view) * n + j] for j in range(n)] + [z[view * n + j] for j in range(n) if j != i]
            logits = torch.stack([anchor @ o / tau for o in others])
            losses.append(-(logits[i] - torch.logsumexp(logits, 0)))  # the positive is the other view's row i
        total += float(torch.stack(losses).mean())
    return total


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_nt_xent_is_half_the_reference_sum(tau):
    z = torch.randn(2 * 5, 7, generator=torch.Generator().manual_seed(3))
    ref = _reference_sum_naive(z, tau)
    assert float(nt_xent(z, tau)) == pytest.approx(ref / 2, rel=1e-5)
    assert float(md.reference_contrastive_loss(z, tau)) == pytest.approx(ref, rel=1e-9)


def test_lars_step_on_twice_the_loss():
    r = md.measure_loss_scale(seed=0)
    assert r["ref_over_ours"] == pytest.approx(2.0, rel=1e-6)
    assert r["adapted_ratio"] == pytest.approx(1.0, rel=1e-5)  # trust ratio cancels the gradient scale
    assert r["adapted_layer_min"] == pytest.approx(1.0, rel=1e-5)
    assert r["adapted_layer_max"] == pytest.approx(1.0, rel=1e-5)
    assert r["excluded_ratio"] == pytest.approx(2.0, rel=1e-5)  # biases and BN: plain momentum SGD
    assert r["half_wd_max_diff"] < 1e-6  # reference(2L, wd) == simclr_lib(L, wd / 2) on adapted weights
    assert r["n_excluded"] > 0 and r["n_adapted"] > 0


def test_warmup_starts_at_peak_over_w():
    assert md.ours_warmup(3, 100, 10, peak=2.0) == pytest.approx([0.2, 0.4, 0.6])  # (step + 1) / W
    assert [md.reference_warmup(s, 100, 10, peak=2.0) for s in range(3)] == pytest.approx([0.0, 0.2, 0.4])
    w = md.measure_warmup(10)
    assert w["ours"][9] == pytest.approx(1.0) and w["ref"][9] == pytest.approx(0.9)
    assert w["ours"][10] == pytest.approx(1.0) and w["ref"][10] == pytest.approx(1.0)


def test_tf_crop_height_is_uniform_for_a_square_aspect():
    """aspect 1 at 32x32: min height rint(sqrt(81.92)) = 9, whose 81 px area is under 8% and becomes 10; so h is
    uniform on 9..32 with 9 folded into 10."""
    rng = np.random.default_rng(0)
    aspect = np.ones(48_000, dtype=np.float32)
    h, w, ok = md._generate_random_crop(rng, 32, 32, np.float32(81.92), np.float32(1024.0), aspect)
    assert ok.all() and (h == w).all()
    counts = np.bincount(h, minlength=33)
    assert counts[:10].sum() == 0 and set(np.nonzero(counts)[0]) == set(range(10, 33))
    assert counts[10] / h.size == pytest.approx(2 / 24, abs=0.006)
    assert counts[20] / h.size == pytest.approx(1 / 24, abs=0.004)


def test_tf_crop_boxes_respect_the_constraints():
    b = md.tf_sample_distorted_bounding_box(5000, 32, 32, np.random.default_rng(1))
    top, left, h, w = b.T
    assert (h >= 1).all() and (w >= 1).all() and (top + h <= 32).all() and (left + w <= 32).all()
    assert (h * w >= 0.1 * 1024).all()  # min_object_covered=0.1 of the whole-image box
    assert ((w / h > 0.7) & (w / h < 1.45)).all()  # 3/4..4/3 up to integer rounding
    assert (top[h < 32] < 32 - h[h < 32]).all()  # TF's offset is uniform in [0, H - h)


def test_tf_crops_are_smaller_than_torchvision():
    n = 20_000
    tf = md.tf_sample_distorted_bounding_box(n, 32, 32, np.random.default_rng(0))
    tf_mean = float((tf[:, 2] * tf[:, 3]).mean() / 1024)
    box = SimCLRAugment(size=32).sample_params(n, 32, 32, generator=torch.Generator().manual_seed(0))["box"]
    ours_mean = float((box[:, 2] * box[:, 3]).mean() / 1024)
    tv = md.torchvision_boxes(n, 32, seed=0)
    tv_mean = float((tv[:, 2] * tv[:, 3]).mean() / 1024)
    sem = 0.28 / math.sqrt(n)  # area std is about 0.28
    assert tf_mean == pytest.approx(0.432, abs=5 * sem)  # real TF 2.21: 0.4317 +- 0.0005 (docs/differences.md)
    assert tv_mean == pytest.approx(0.490, abs=5 * sem)
    assert ours_mean == pytest.approx(tv_mean, abs=7 * sem)
    assert tv_mean - tf_mean > 0.04


def test_brightness_additive_moves_pixels_twice_as_far():
    r = md.measure_brightness(0.5, n=300)
    for s in r.values():
        assert s["additive"] > 1.7 * s["multiplicative"]
        assert s["additive_dark"] > 5 * s["multiplicative_dark"]  # multiplying keeps black black


def test_head_last_bn_adds_no_trainable_parameter():
    plain, bn = ProjectionHead(512), ProjectionHead(512, last_bn=True)
    n = lambda m, trainable: sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable)  # noqa: E731
    assert n(bn, True) == n(plain, True)  # the last Linear's bias (128) becomes the BN scale (128)
    assert n(bn, False) == n(plain, False) + 128  # + the frozen zero BN shift
    assert isinstance(bn.net[-1], torch.nn.BatchNorm1d) and not bn.net[-1].bias.requires_grad


@pytest.mark.skipif(not hasattr(SimCLRConfig(), "proj_last_bn"), reason="SimCLRConfig has no proj_last_bn yet")
def test_config_proj_last_bn():
    assert SimCLRConfig().proj_last_bn is False
    assert isinstance(list(build_model(SimCLRConfig(arch="small", proj_last_bn=True)).head.modules())[-1],
                      torch.nn.BatchNorm1d)


@pytest.mark.skipif(not hasattr(SimCLRConfig(), "zero_init_residual"),
                    reason="SimCLRConfig has no zero_init_residual yet")
def test_config_zero_init_residual():
    assert SimCLRConfig().zero_init_residual is False
    assert md.bn_zero_fraction(build_model(SimCLRConfig(arch="resnet18")).encoder)[0] == 0.0
    frac, zero_layers, layers = md.bn_zero_fraction(
        build_model(SimCLRConfig(arch="resnet18", zero_init_residual=True)).encoder)
    assert (frac, zero_layers, layers) == (0.4, 8, 20)  # bn2 of the 8 BasicBlocks: 1920 of 4800 scales
