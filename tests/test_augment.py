"""SimCLRAugment against torchvision: each batched op on fixed per-sample parameters, the crop-box sampler's
distribution, and the whole pipeline's view statistics against the per-image reference on real CIFAR-10."""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

from simclr_lib import augment as A
from simclr_lib.augment import SimCLRAugment

B = 48


@pytest.fixture
def images() -> torch.Tensor:
    """Random float images with the edge cases of the colour ops: grey pixels, tied channels, coarse levels."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, 3, 32, 32, generator=g)
    x[:4, :, :6] = 0.5  # grey pixels (chroma 0)
    x[4:8, 0] = x[4:8, 1]  # r == g
    x[8:12, 2] = x[8:12, 0]  # r == b
    x[12:20] = (x[12:20] * 4).round() / 4  # many exact ties
    x[20:24] = x[20:24].clamp(0.3, 0.7) * 2 - 0.3  # values that the blends push past 0 and 1
    return x.clamp(0, 1)


def per_sample(fn, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """The naive reference: call a torchvision op on each sample with its own parameters."""
    return torch.stack([fn(x[i], *[p[i].tolist() for p in params]) for i in range(len(x))])


# --- shapes, dtypes, ranges, determinism ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shapes_dtypes_ranges(dtype: torch.dtype) -> None:
    x = torch.randint(0, 256, (6, 3, 40, 48), dtype=torch.uint8)
    x = x if dtype == torch.uint8 else A.to_float(x)
    aug = SimCLRAugment(size=32)
    out, params = aug(x, return_params=True)
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert {"box", "area", "flip", "jitter", "factors", "order", "gray", "blur", "sigma"} <= set(params)
    v = aug.views(x, n_views=3)
    assert v.shape == (18, 3, 32, 32) and v.dtype == torch.float32 and 0 <= v.min() and v.max() <= 1
    blurred = SimCLRAugment(size=96, strength=1.0, blur=True).views(x, 2)
    assert blurred.shape == (12, 3, 96, 96) and 0 <= blurred.min() and blurred.max() <= 1


def test_views_are_view_major_and_differ() -> None:
    levels = torch.arange(8, dtype=torch.uint8) * 30  # image b is a constant grey of level 30 b
    x = levels.view(8, 1, 1, 1).expand(8, 3, 32, 32).contiguous()
    plain = SimCLRAugment(jitter_p=0.0, gray_p=0.0)  # crops and flips keep a constant image as it is
    v = plain.views(x, n_views=3)
    expected = (levels.float() / 255).repeat(3).view(24, 1, 1, 1).expand_as(v)
    torch.testing.assert_close(v, expected, atol=1e-6, rtol=0)
    real = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    v = SimCLRAugment().views(real, 2)
    differ = (v[:16] - v[16:]).abs().flatten(1).amax(1) > 1e-3
    assert differ.all()


def test_generator_seeds() -> None:
    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    aug = SimCLRAugment()
    a = aug.views(x, 2, generator=torch.Generator().manual_seed(1))
    b = aug.views(x, 2, generator=torch.Generator().manual_seed(1))
    c = aug.views(x, 2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    boxes = aug(x.repeat(10, 1, 1, 1), return_params=True)[1]["box"]
    assert len(torch.unique(boxes, dim=0)) > 50  # every sample has its own crop


def test_make_views_is_one_batched_views_call() -> None:
    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    aug = SimCLRAugment(size=16)
    want = aug.views(x, 3, generator=torch.Generator().manual_seed(0))
    got = A.make_views(x, aug, 3, torch.Generator().manual_seed(0))
    assert got.shape == (30, 3, 16, 16) and torch.equal(got, want)
    cl = A.make_views(x, aug, 2, torch.Generator().manual_seed(0), channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl, aug.views(x, 2, generator=torch.Generator().manual_seed(0)))


def test_cpu_blocks_do_not_change_the_result() -> None:
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    aug = SimCLRAugment()
    params = aug.sample_params(40, 32, 32, generator=torch.Generator().manual_seed(0))
    whole = aug.apply(x, params)
    aug.cpu_block_pixels = 7 * 32 * 32  # blocks of 7 samples, the last one shorter
    torch.testing.assert_close(aug.apply(x, params), whole, atol=1e-6, rtol=0)


# --- each op against torchvision.transforms.functional on fixed per-sample parameters ----------------------------
COLOUR_OPS = ["brightness", "contrast", "saturation", "hue"]  # the columns of color_jitter's factors


@pytest.mark.parametrize("name,low,high", [("brightness", 0.0, 2.0), ("contrast", 0.0, 2.0),
                                           ("saturation", 0.0, 2.0), ("hue", -0.5, 0.5)])
def test_colour_ops_match_torchvision(images: torch.Tensor, name: str, low: float, high: float) -> None:
    """Each colour op alone: color_jitter with the other three factors neutral (1, 1, 1, 0), in a random order."""
    g = torch.Generator().manual_seed(3)
    factor = low + (high - low) * torch.rand(B, generator=g)
    factors = torch.tensor([1.0, 1.0, 1.0, 0.0]).repeat(B, 1)
    factors[:, COLOUR_OPS.index(name)] = factor
    order = torch.rand(B, 4, generator=g).argsort(1)
    ours = A.color_jitter(images, factors, order)
    ref = per_sample(getattr(TF, f"adjust_{name}"), images, factor)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    if name == "hue":
        torch.testing.assert_close(A.adjust_hue(images, factor), ref, atol=1e-5, rtol=0)


def test_grayscale_and_flip_match_torchvision(images: torch.Tensor) -> None:
    mask = torch.arange(B) % 3 == 0
    ref = torch.stack([TF.rgb_to_grayscale(im, 3) if m else im for im, m in zip(images, mask)])
    torch.testing.assert_close(A.grayscale(images, mask), ref, atol=1e-6, rtol=0)
    ref = torch.stack([TF.hflip(im) if m else im for im, m in zip(images, mask)])
    assert torch.equal(A.hflip(images, mask), ref)


def test_color_jitter_order_matches_sequential_torchvision(images: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(4)
    factors = torch.cat([0.2 + 1.6 * torch.rand(B, 3, generator=g), torch.rand(B, 1, generator=g) - 0.5], 1)
    order = torch.rand(B, 4, generator=g).argsort(1)
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    ref = []
    for i in range(B):
        im = images[i]
        for op in order[i].tolist():
            im = fns[op](im, factors[i, op].item())
        ref.append(im)
    torch.testing.assert_close(A.color_jitter(images, factors, order), torch.stack(ref), atol=1e-5, rtol=0)
    neutral = torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(B, 4)
    torch.testing.assert_close(A.color_jitter(images, neutral, order), images, atol=1e-6, rtol=0)


@pytest.mark.parametrize("height,width", [(32, 32), (40, 48)])
def test_resized_crop_matches_torchvision(height: int, width: int) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.rand(B, 3, height, width, generator=g)
    boxes = A.sample_crop_boxes(B, height, width, generator=g)
    flip = torch.arange(B) % 2 == 1
    ours = A.resized_crop(x, boxes, 32, flip)
    ref = []
    for i in range(B):
        top, left, h, w = (int(v) for v in boxes[i])
        view = TF.resized_crop(x[i], top, left, h, w, [32, 32], antialias=False)
        if h <= 32 and w <= 32:  # upsampling: antialias makes no difference
            torch.testing.assert_close(TF.resized_crop(x[i], top, left, h, w, [32, 32], antialias=True), view)
        ref.append(TF.hflip(view) if flip[i] else view)
    torch.testing.assert_close(ours, torch.stack(ref), atol=1e-5, rtol=0)


def test_gaussian_blur_matches_torchvision() -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.rand(12, 3, 96, 96, generator=g)
    sigma = 0.1 + 1.9 * torch.rand(12, generator=g)
    mask = torch.arange(12) % 4 != 0
    k = A.blur_kernel_size(96)
    ref = torch.stack([TF.gaussian_blur(im, [k, k], [s.item()] * 2) if m else im for im, s, m in zip(x, sigma, mask)])
    torch.testing.assert_close(A.gaussian_blur(x, sigma, k, mask), ref, atol=1e-5, rtol=0)
    assert [A.blur_kernel_size(s) for s in (32, 96, 224)] == [3, 9, 23]


def test_crop_boxes_fallback_matches_torchvision() -> None:
    """No candidate can fit (area > image), so every box is torchvision's central fallback crop."""
    for height, width in [(10, 40), (40, 10), (30, 32)]:
        ours = A.sample_crop_boxes(5, height, width, scale=(2.0, 3.0))
        ref = T.RandomResizedCrop.get_params(torch.zeros(3, height, width), [2.0, 3.0], [3 / 4, 4 / 3])
        assert ours.tolist() == [list(map(float, ref))] * 5


def test_crop_box_distribution_matches_torchvision() -> None:
    """Mean area fraction, log aspect ratio, side and offset of 20k boxes, each within 5 standard errors."""
    n, (height, width) = 20_000, (32, 32)
    ours = A.sample_crop_boxes(n, height, width, generator=torch.Generator().manual_seed(7)).double()
    torch.manual_seed(7)
    img = torch.zeros(3, height, width)
    ref = torch.tensor([T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]).double()
    assert (ours[:, 0] + ours[:, 2] <= height).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    assert (ours == ours.round()).all() and (ours[:, 2:] >= 1).all() and (ours[:, :2] >= 0).all()

    def stats(b: torch.Tensor) -> torch.Tensor:  # n x 4
        return torch.stack([b[:, 2] * b[:, 3] / (height * width), (b[:, 3] / b[:, 2]).log(), b[:, 3], b[:, 1]], 1)

    s_ours, s_ref = stats(ours), stats(ref)
    se = ((s_ours.var(0) + s_ref.var(0)) / n).sqrt()
    z = (s_ours.mean(0) - s_ref.mean(0)) / se
    assert z.abs().max() < 5, f"z-scores (area, log ratio, width, left) = {z.tolist()}"


# --- the whole pipeline on real CIFAR-10 against the per-image reference ------------------------------------------
def cifar10_test_images(per_class: int = 300) -> torch.Tensor:
    """The first ``per_class`` test JPEGs of each class, decoded with PIL. Shape: (10 * per_class, 3, 32, 32)."""
    from PIL import Image

    root = Path(os.environ.get("SIMCLR_DATA_DIR", "")) / "cifar10" / "test"
    if not os.environ.get("SIMCLR_DATA_DIR") or not root.is_dir():
        pytest.skip("real CIFAR-10 not found: set SIMCLR_DATA_DIR to a folder holding cifar10/test/<class>/*.jpg")
    files = [f for d in sorted(root.iterdir()) if d.is_dir() for f in sorted(d.glob("*.jpg"))[:per_class]]
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


STAT_NAMES = ["mean R", "mean G", "mean B", "mean sq R", "mean sq G", "mean sq B", "grey", "spatial std R",
              "spatial std G", "spatial std B", "colourfulness", "detail"]


def view_stats(v: torch.Tensor) -> torch.Tensor:
    """Per view: channel means and mean squares, greyscale indicator, spatial std per channel (contrast),
    mean max-min over channels (saturation), mean |horizontal gradient| (crop scale). Shape: (N, 3, S, S) -> (N, 12).
    """
    is_gray = ((v[:, 0] - v[:, 1]).abs().amax((1, 2)) < 1e-6) & ((v[:, 1] - v[:, 2]).abs().amax((1, 2)) < 1e-6)
    colourful = (v.amax(1) - v.amin(1)).mean((1, 2))
    detail = (v[..., 1:] - v[..., :-1]).abs().mean((1, 2, 3))
    return torch.cat([v.mean((2, 3)), (v ** 2).mean((2, 3)), is_gray[:, None].float(), v.std((2, 3)),
                      colourful[:, None], detail[:, None]], 1).double()


@contextlib.contextmanager
def one_thread():
    """Correctness, not speed: one thread keeps this test quick on a CPU shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_pipeline_statistics_match_reference_on_cifar10() -> None:
    """SimCLRAugment vs reference_transform on 3000 real images, 2 views each: 12 per-view statistics (see
    view_stats) agree within 5 standard errors of the per-image paired difference; the drawn crop areas match
    torchvision's box sampler and the greyscale draws p=0.2 within 5 standard errors.

    The reference runs on float images so that both sides do the same float math (torchvision on uint8 truncates
    after every blend, which darkens by ~0.5/255 per op)."""
    x = cifar10_test_images()
    n = len(x)
    torch.manual_seed(0)
    with one_thread():
        ref = A.augment_per_image(A.to_float(x), 2, A.reference_transform(32, 0.5))  # 2n x 3 x 32 x 32
        ours, params = SimCLRAugment(32, 0.5)(x.repeat(2, 1, 1, 1), torch.Generator().manual_seed(0), True)
    d = (view_stats(ours) - view_stats(ref)).view(2, n, -1).mean(0)  # n x 12, paired by image
    z = d.mean(0) / (d.std(0) / math.sqrt(n))
    assert z.abs().max() < 5, {k: round(v, 2) for k, v in zip(STAT_NAMES, z.tolist())}
    std_ours, std_ref = ours.transpose(0, 1).flatten(1).std(1), ref.transpose(0, 1).flatten(1).std(1)
    torch.testing.assert_close(std_ours, std_ref, atol=0.01, rtol=0)  # a readable summary of the sq check
    m = 2 * n
    assert abs(params["gray"].double().mean() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / m)
    area = params["area"].double()
    ref_area = torch.tensor([math.prod(T.RandomResizedCrop.get_params(x[0], [0.08, 1.0], [3 / 4, 4 / 3])[2:])
                             for _ in range(m)]).double() / 1024
    assert abs(area.mean() - ref_area.mean()) < 5 * math.sqrt((area.var() + ref_area.var()) / m)


# --- teaching helpers and errors ------------------------------------------------------------------------------
def test_single_ops_and_colour_distortion() -> None:
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    xf = A.to_float(x)
    aug = SimCLRAugment(flip_p=1.0, gray_p=1.0)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(aug.forward(x, g, ops=("flip",)), xf.flip(-1))
    torch.testing.assert_close(aug.forward(x, g, ops=("grayscale",)), A.rgb_to_grayscale(xf).expand_as(xf))
    for op in ("crop", "jitter", "blur"):
        assert aug.forward(x, g, ops=(op,)).shape == (8, 3, 32, 32)
    out = A.color_distortion(x, strength=0.0, generator=torch.Generator().manual_seed(0))  # only greyscale acts
    gray = A.rgb_to_grayscale(xf).expand_as(xf)
    same = (out - xf).abs().flatten(1).amax(1) < 1e-5
    grey = (out - gray).abs().flatten(1).amax(1) < 1e-6
    assert (same | grey).all()  # models.Normalize vs torchvision: tests/test_models.py


def test_reference_transform_on_tensors_and_pil() -> None:
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    v = A.augment_per_image(x, 3, A.reference_transform(32, 0.5))
    assert v.shape == (15, 3, 32, 32) and v.dtype == torch.float32 and 0 <= v.min() and v.max() <= 1
    pil = TF.to_pil_image(x[0])
    out = A.reference_transform(24, 1.0, blur=True)(pil)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    identity = A.augment_per_image(x, 2, lambda im: im.float() / 255)
    assert torch.equal(identity, A.to_float(x).repeat(2, 1, 1, 1))


def test_bad_input_gives_one_line_errors() -> None:
    aug = SimCLRAugment()
    for bad, match in [(torch.zeros(3, 32, 32), "B, 3, H, W"), (torch.zeros(2, 1, 32, 32), "B, 3, H, W"),
                       (torch.zeros(2, 3, 32, 32, dtype=torch.int32), "uint8 or floating")]:
        with pytest.raises(ValueError, match=match):
            aug(bad)
    with pytest.raises(ValueError, match="n_views"):
        aug.views(torch.zeros(2, 3, 32, 32), 0)
    with pytest.raises(ValueError, match="unknown ops"):
        aug(torch.zeros(2, 3, 32, 32), ops=("rotate",))
    with pytest.raises(ValueError, match="strength"):
        SimCLRAugment(strength=3.0)
    with pytest.raises(ValueError, match="min_scale"):
        SimCLRAugment(min_scale=0.0)
    with pytest.raises(ValueError, match="flip_p"):
        SimCLRAugment(flip_p=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_device_and_generator() -> None:
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device="cuda")
    aug = SimCLRAugment()
    with pytest.raises(ValueError, match="generator"):
        aug(x, torch.Generator())
    aug.views(x, 2)  # warm-up: copies the few constants to the GPU once
    torch.cuda.set_sync_debug_mode("error")  # from here, any host sync inside raises
    try:
        a = aug.views(x, 2, torch.Generator(device="cuda").manual_seed(0))
        b = aug.views(x, 2, torch.Generator(device="cuda").manual_seed(0))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert a.device == x.device and torch.equal(a, b)
    params = aug.sample_params(64, 32, 32, torch.device("cpu"))  # the same parameters on both devices
    cpu = aug.apply(x.cpu(), params)
    gpu = aug.apply(x, {k: v.cuda() for k, v in params.items()})
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def test_ops_argument_selects_ops_and_keeps_the_default() -> None:
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    full = SimCLRAugment(size=16, blur=True)
    assert full.ops == A.OPS
    want = full.views(x, 2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(SimCLRAugment(size=16, blur=True, ops=A.OPS[::-1]).views(
        x, 2, torch.Generator().manual_seed(0)), want, rtol=0, atol=0)  # order of the names does not matter
    for ops in [("crop",), ("jitter", "grayscale"), ("blur", "flip"), ()]:
        aug = SimCLRAugment(size=16, blur=True, ops=ops)
        got = aug(x, torch.Generator().manual_seed(1))
        assert torch.equal(got, full(x, torch.Generator().manual_seed(1), ops=ops))
    plain = SimCLRAugment(size=16, ops=("jitter",), jitter_p=0.0)(x)  # no crop: the whole image, resized
    torch.testing.assert_close(plain, A.resized_crop(A.to_float(x), torch.tensor([[0.0, 0, 32, 32]] * 6), 16))
    assert "ops=('crop',)" in repr(SimCLRAugment(ops=["crop"]))
    with pytest.raises(ValueError, match="unknown ops"):
        SimCLRAugment(ops=("crop", "rotate"))
    with pytest.raises(ValueError, match="one string"):
        SimCLRAugment(ops="crop")
