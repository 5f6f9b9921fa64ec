"""Tests of simclr_lib.data: folders, caches, binary layouts, bad input, and the ``shapes`` generator."""
from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr_lib import data as D
from simclr_lib.data import ImageData, files, load_dataset, make_shapes, resolve_cache_dir, resolve_data_dir, shapes


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test caches into its own folder and never reads the real data dir by accident."""
    monkeypatch.setenv("SIMCLR_CACHE_DIR", str(tmp_path / "cache"))


def _save(path: Path, img: Image.Image, fmt: str = "PNG", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def _solid_folder(root: Path, colours: dict[str, list[tuple[int, int, int]]], size: int = 8) -> Path:
    """``root/<class>/<i>.png`` filled with the given colours (PNG: lossless, so pixels are exact)."""
    for cls, cols in colours.items():
        for i, c in enumerate(cols):
            _save(root / cls / f"{i:02d}.png", Image.new("RGB", (size, size), c))
    return root


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 48-bit RGB PNG written by hand (PIL cannot write one). Shape: arr (H, W, 3) uint16."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class _DecodeSpy:
    """Counts calls of ``files._decode_files``: a cache hit decodes nothing, a miss decodes the folder."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = files._decode_files

        def spy(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(files, "_decode_files", spy)

    def decoded(self) -> bool:
        """Whether anything was decoded since the last call."""
        calls, self.calls = self.calls, 0
        return calls > 0


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


# --- ImageData and locations ----------------------------------------------------------------------------------------
def test_imagedata_subset_to_and_validation():
    d = ImageData(torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).view(5, 3, 2, 2), torch.arange(5), ["a"], "x/y")
    s = d.subset(3)
    assert len(s) == 3 and torch.equal(s.images, d.images[:3]) and s.labels.tolist() == [0, 1, 2]
    assert s.images.untyped_storage().data_ptr() != d.images.untyped_storage().data_ptr()  # a copy
    with pytest.raises(ValueError, match="subset=6 is out of range .* 5 images"):
        d.subset(6)
    moved = d.to("cpu")
    assert moved.images.device.type == "cpu" and moved.name == "x/y"
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 3, 4, 4), None, [], "bad")
    with pytest.raises(ValueError, match="labels"):
        ImageData(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), [], "bad")


def test_resolve_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIMCLR_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path / "data"
    monkeypatch.setenv("SIMCLR_DATA_DIR", "/some/env/dir")
    assert resolve_data_dir() == Path("/some/env/dir")
    assert resolve_data_dir("/explicit") == Path("/explicit")


def test_cache_dir_env_then_writable_data_dir_then_home(tmp_path, monkeypatch):
    assert resolve_cache_dir(tmp_path) == tmp_path / "cache"  # from the autouse fixture's env
    monkeypatch.delenv("SIMCLR_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    writable = tmp_path / "rw"
    writable.mkdir()
    assert resolve_cache_dir(writable) == writable / "cache"
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)  # like /work/shared/data; respected even when running as root
    try:
        assert resolve_cache_dir(read_only) == tmp_path / "home" / ".cache" / "simclr_lib"
    finally:
        read_only.chmod(0o755)


# --- errors for bad names, splits, dirs, downloads ------------------------------------------------------------------
def test_unknown_name_split_and_folder_misuse(tmp_path):
    with pytest.raises(ValueError) as e:
        load_dataset("imagenet")
    assert "cifar10, stl10, folder, shapes" in _one_line(e)
    with pytest.raises(ValueError) as e:
        load_dataset("cifar10", "val")
    assert "'val'" in _one_line(e) and "train, test" in str(e.value)
    with pytest.raises(ValueError, match="train, test, unlabeled, train\\+unlabeled"):
        load_dataset("stl10", "valid")
    with pytest.raises(ValueError, match="folder="):
        load_dataset("folder")
    with pytest.raises(ValueError, match="folder="):
        load_dataset("cifar10", folder=tmp_path)


def test_missing_cifar10_names_dir_and_layouts(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("cifar10", "test", tmp_path / "nowhere", progress=False)
    msg = _one_line(e)
    for part in (str(tmp_path / "nowhere"), "cifar-10-batches-py/", "cifar10/test/<class>/", "download=True",
                 "SIMCLR_DATA_DIR"):
        assert part in msg


def test_failed_download_is_reported_in_one_line(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3]\nTemporary failure in name resolution>")

    monkeypatch.setattr(tvu, "download_url", offline)  # what data.releases downloads CIFAR-10 with
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("cifar10", "train", tmp_path, download=True, progress=False)
    msg = _one_line(e)
    assert "download=True failed (OSError" in msg and "name resolution" in msg and str(tmp_path) in msg


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("folder", folder=tmp_path / "absent", progress=False)
    assert str(tmp_path / "absent") in _one_line(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("folder", folder=tmp_path / "empty", progress=False)
    assert "no images in" in _one_line(e) and str(tmp_path / "empty") in str(e.value)
    (tmp_path / "one" / "cat").mkdir(parents=True)
    _save(tmp_path / "one" / "dog" / "a.png", Image.new("RGB", (4, 4)))
    with pytest.raises(FileNotFoundError, match="class folder .*cat holds no images"):
        load_dataset("folder", folder=tmp_path / "one", progress=False)


# --- image folders and the cache ------------------------------------------------------------------------------------
def test_folder_labels_pixels_and_cache_hit(tmp_path, monkeypatch):
    colours = {"b_red": [(255, 0, 0), (200, 10, 10)], "a_blue": [(0, 0, 255)], "c_mix": [(1, 2, 3), (4, 5, 6)]}
    root = _solid_folder(tmp_path / "imgs", colours)
    (root / "a_blue" / "notes.txt").write_text("not an image")  # ignored by extension
    spy = _DecodeSpy(monkeypatch)
    first = load_dataset("folder", folder=root, progress=False)
    assert first.classes == ["a_blue", "b_red", "c_mix"] and spy.decoded()
    assert first.images.shape == (5, 3, 8, 8) and first.images.dtype == torch.uint8 and first.images.is_contiguous()
    assert first.labels.dtype == torch.int64 and first.labels.tolist() == [0, 1, 2, 1, 2]  # classes interleaved
    by_class = [colours[k] for k in sorted(colours)]  # naive reference: the colours written, round-robin
    expected = [c[i] for i in range(2) for c in by_class if i < len(c)]
    assert [tuple(img[:, 3, 3].tolist()) for img in first.images] == expected

    second = load_dataset("folder", folder=root, progress=False)
    assert not spy.decoded(), "decoded again although the cache is valid"
    assert torch.equal(second.images, first.images) and torch.equal(second.labels, first.labels)
    assert list((tmp_path / "cache").glob("folder_imgs_*.pt"))
    _save(root / "a_blue" / "zz.png", Image.new("RGB", (8, 8), (9, 9, 9)))  # the source changed: rebuild
    third = load_dataset("folder", folder=root, progress=False)
    assert spy.decoded() and len(third) == 6 and third.labels.tolist() == [0, 1, 2, 0, 1, 2]
    load_dataset("folder", folder=root, cache=False, progress=False)  # the cache is valid, but not used
    assert spy.decoded()


def test_folder_subset_decodes_only_its_first_files(tmp_path, monkeypatch):
    colours = {"a": [(10, 0, 0), (20, 0, 0), (30, 0, 0)], "b": [(0, 10, 0), (0, 20, 0)], "c": [(0, 0, 10)]}
    root = _solid_folder(tmp_path / "imgs", colours)
    decoded = []
    real = files._decode_files
    monkeypatch.setattr(files, "_decode_files",
                        lambda paths, *a, **k: decoded.append(len(paths)) or real(paths, *a, **k))
    part = load_dataset("folder", folder=root, subset=4, progress=False)
    assert decoded == [4]  # not all 6 files, then sliced
    full = load_dataset("folder", folder=root, cache=False, progress=False)
    assert torch.equal(part.images, full.images[:4])
    assert part.labels.tolist() == full.labels[:4].tolist() == [0, 1, 2, 0]  # the interleaved prefix


def test_corrupt_and_truncated_files_error_or_skip(tmp_path, monkeypatch):
    root = _solid_folder(tmp_path / "imgs", {"a": [(10, 20, 30)], "b": [(40, 50, 60)]})
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "a" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "b" / "garbage.png").write_bytes(b"this is not a png at all")
    with pytest.raises(ValueError) as e:
        load_dataset("folder", folder=root, progress=False)
    msg = _one_line(e)
    assert str(root / "a" / "truncated.jpg") in msg and "pass skip_corrupt=True to skip it" in msg
    with pytest.warns(UserWarning, match="skipping corrupt image"):
        d = load_dataset("folder", folder=root, skip_corrupt=True, progress=False)
    assert len(d) == 2 and d.labels.tolist() == [0, 1]
    assert [tuple(img[:, 0, 0].tolist()) for img in d.images] == [(10, 20, 30), (40, 50, 60)]
    spy = _DecodeSpy(monkeypatch)
    with pytest.raises(ValueError, match="truncated.jpg .*skip_corrupt=True"):  # the cache remembers the bad file
        load_dataset("folder", folder=root, progress=False)
    assert not spy.decoded()
    with pytest.warns(UserWarning, match="skipping 2 corrupt"):
        again = load_dataset("folder", folder=root, skip_corrupt=True, progress=False)
    assert not spy.decoded() and torch.equal(again.images, d.images) and torch.equal(again.labels, d.labels)
    (tmp_path / "bad" / "x").mkdir(parents=True)
    (tmp_path / "bad" / "x" / "only.jpg").write_bytes(b"\xff\xd8\xff broken")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="none of the 1 images in .*bad could be decoded"):
        load_dataset("folder", folder=tmp_path / "bad", skip_corrupt=True, progress=False)


def test_grey_rgba_palette_16bit_and_bilevel_become_rgb(tmp_path):
    root = tmp_path / "modes"
    _save(root / "a_grey.png", Image.new("L", (4, 4), 77))
    rgba = Image.new("RGBA", (4, 4), (10, 200, 30, 255))
    rgba.putpixel((1, 0), (10, 200, 30, 0))
    rgba.putpixel((2, 0), (10, 200, 30, 128))
    _save(root / "b_rgba.png", rgba)
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 250, 100, 5, 7, 8, 9] + [0] * 759)
    pal.putpixel((1, 0), 2)
    _save(root / "c_palette.png", pal)
    _save(root / "d_palette_transparent.png", pal, transparency=2)
    _save(root / "e_grey16.png", Image.fromarray(np.array([[0, 25700, 65535, 32896]] * 4, dtype=np.uint16)))
    rgb16 = np.zeros((4, 4, 3), np.uint16)
    rgb16[...] = (65535, 32896, 257)
    (root / "f_rgb16.png").write_bytes(_png16_rgb(rgb16))
    _save(root / "g_bilevel.png", Image.new("1", (4, 4), 1))
    d = load_dataset("folder", folder=root, progress=False)
    px = lambda i, x: tuple(d.images[i, :, 0, x].tolist())  # noqa: E731
    assert d.labels is None and d.images.shape == (7, 3, 4, 4)
    assert px(0, 0) == (77, 77, 77)
    alpha = 128 / 255  # naive reference of "over white"
    assert px(1, 0) == (10, 200, 30) and px(1, 1) == (255, 255, 255)
    assert px(1, 2) == tuple(round(c * alpha + 255 * (1 - alpha)) for c in (10, 200, 30))
    assert px(2, 0) == (250, 100, 5) and px(2, 1) == (7, 8, 9)
    assert px(3, 0) == (250, 100, 5) and px(3, 1) == (255, 255, 255)
    assert [px(4, x) for x in range(4)] == [(0,) * 3, (100,) * 3, (255,) * 3, (128,) * 3]
    assert px(5, 0) == (255, 128, 1)
    assert px(6, 0) == (255, 255, 255)


def test_small_images_resized_up_and_size_rules(tmp_path):
    small = _solid_folder(tmp_path / "small", {"a": [(50, 60, 70)] * 2}, size=5)
    up = load_dataset("folder", folder=small, image_size=32, progress=False)
    assert up.images.shape == (2, 3, 32, 32) and (up.images[:, 0] == 50).all() and (up.images[:, 2] == 70).all()
    mixed = tmp_path / "mixed"
    _save(mixed / "a" / "0.png", Image.new("RGB", (5, 9), (1, 2, 3)))
    _save(mixed / "a" / "1.jpg", Image.new("RGB", (40, 30), (200, 100, 0)), "JPEG", quality=95)
    assert load_dataset("folder", folder=mixed, progress=False).images.shape == (2, 3, 32, 32)
    same = tmp_path / "same"
    for i in range(3):
        _save(same / f"{i}.png", Image.new("RGB", (20, 12), (i, i, i)))
    assert load_dataset("folder", folder=same, progress=False).images.shape == (3, 3, 12, 20)  # native kept


def test_resize_is_a_centre_crop_then_pil_bicubic():
    """The one resize: the centre box of the target's aspect ratio, then bicubic with antialiasing (PIL's BICUBIC)."""
    rng = np.random.default_rng(2)
    for (h, w), (out_h, out_w), box in [((12, 20), (6, 6), (4, 0, 16, 12)), ((40, 30), (16, 16), (0, 5, 30, 35)),
                                        ((30, 40), (24, 32), (0, 0, 40, 30)), ((5, 9), (32, 32), (2, 0, 7, 5))]:
        # mid-range values: PIL rounds and clips between its two passes, so overshoot would differ there
        hwc = rng.integers(64, 192, (h, w, 3), dtype=np.uint8)
        ours = D.resize(torch.from_numpy(hwc).permute(2, 0, 1)[None].repeat(2, 1, 1, 1), (out_h, out_w))
        ref = np.asarray(Image.fromarray(hwc).crop(box).resize((out_w, out_h), Image.BICUBIC))
        assert ours.shape == (2, 3, out_h, out_w) and ours.dtype == torch.uint8
        assert (ours[1].permute(1, 2, 0).int() - torch.from_numpy(ref.copy()).int()).abs().max() <= 1, (h, w)
    same = torch.randint(0, 256, (2, 3, 7, 9), dtype=torch.uint8)
    assert torch.equal(D.resize(same, (7, 9)), same)  # the size already: unchanged


def test_jpeg_fast_path_matches_pil_with_exif_rotation():
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 255, (3, 5, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 12 x 20, blocky
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    fast = files._decode_chunk([buf.getvalue()], ["x.jpg"], skip_corrupt=False)[0]
    slow = files._decode_pil(buf.getvalue(), "x.jpg", skip_corrupt=False)
    assert fast.shape == slow.shape == (3, 20, 12)  # turned upright by both paths
    assert (fast.int() - slow.int()).abs().max() <= 2


# --- binary releases ------------------------------------------------------------------------------------------------
def _fake_cifar(root: Path, per_batch: int = 3) -> dict[str, np.ndarray]:
    """torchvision's cifar-10-batches-py layout with tiny batches; returns the images written, as (N, 32, 32, 3)."""
    rng, written = np.random.default_rng(0), {}
    root.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        hwc = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        rows = np.stack([np.concatenate([im[:, :, c].reshape(-1) for c in range(3)]) for im in hwc])  # naive
        batch = {b"data": rows, b"labels": [(i + j) % 10 for j in range(per_batch)], b"batch_label": name.encode()}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = hwc
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in D.CIFAR10_CLASSES]}))
    return written


def test_cifar10_batches_py_layout(tmp_path):
    written = _fake_cifar(tmp_path / "cifar-10-batches-py")
    train = load_dataset("cifar10", "train", tmp_path, progress=False)
    assert train.images.shape == (15, 3, 32, 32) and train.name == "cifar10/train"
    hwc = np.concatenate([written[f"data_batch_{k}"] for k in range(1, 6)])
    assert torch.equal(train.images.permute(0, 2, 3, 1), torch.from_numpy(hwc))
    assert train.labels.tolist() == [(i + j) % 10 for i in range(5) for j in range(3)]
    assert train.classes == D.CIFAR10_CLASSES
    test = load_dataset("cifar10", "test", tmp_path, subset=2, image_size=16, progress=False)
    assert test.images.shape == (2, 3, 16, 16) and test.labels.tolist() == [5, 6]


def test_stl10_binary_layout(tmp_path):
    root, rng = tmp_path / "stl10_binary", np.random.default_rng(0)
    root.mkdir()
    chw = {p: rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8) for p, n in [("train", 2), ("test", 1),
                                                                              ("unlabeled", 3)]}
    for part, imgs in chw.items():  # column-major: x (width) varies slowest within a channel
        (root / f"{part}_X.bin").write_bytes(np.ascontiguousarray(imgs.transpose(0, 1, 3, 2)).tobytes())
    (root / "train_y.bin").write_bytes(bytes([1, 10]))
    (root / "test_y.bin").write_bytes(bytes([3]))
    train = load_dataset("stl10", "train", tmp_path, progress=False)
    assert torch.equal(train.images, torch.from_numpy(chw["train"])) and train.labels.tolist() == [0, 9]
    assert train.classes == D.STL10_CLASSES
    unlabeled = load_dataset("stl10", "unlabeled", tmp_path, progress=False)
    assert unlabeled.labels is None and torch.equal(unlabeled.images, torch.from_numpy(chw["unlabeled"]))
    both = load_dataset("stl10", "train+unlabeled", tmp_path, image_size=32, progress=False)
    assert both.labels is None and both.images.shape == (5, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="STL-10 not found in .*stl10_binary/"):
        load_dataset("stl10", "train", tmp_path / "elsewhere", progress=False)


# --- shapes ---------------------------------------------------------------------------------------------------------
def test_shapes_deterministic_balanced_and_prefix_stable():
    a, b = make_shapes(240, seed=0), make_shapes(240, seed=0)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (240, 3, 32, 32) and a.images.dtype == torch.uint8 and a.classes == D.SHAPE_CLASSES
    assert torch.bincount(a.labels, minlength=8).tolist() == [30] * 8
    assert not torch.equal(make_shapes(240, seed=1).images, a.images)
    assert not torch.equal(make_shapes(240, split="test").images, a.images)
    assert torch.equal(make_shapes(100).images, a.images[:100])  # image i does not depend on n
    six = make_shapes(60, size=48, num_classes=6)
    assert six.images.shape == (60, 3, 48, 48) and torch.bincount(six.labels).tolist() == [10] * 6
    d = load_dataset("shapes", "test", subset=50, progress=False)
    assert d.name == "shapes/test" and torch.equal(d.images, make_shapes(50, split="test").images)
    with pytest.raises(ValueError, match="out of range for shapes/test with 2000 images"):
        load_dataset("shapes", "test", subset=2001)
    with pytest.raises(ValueError, match="num_classes"):
        make_shapes(10, num_classes=9)


def test_star_and_polygons_match_a_naive_polygon_reference():
    from matplotlib.path import Path as Polygon

    uv = torch.rand(20000, 2, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    for points, inner in [(3, 0.5), (4, np.cos(np.pi / 4)), (5, 0.42)]:
        angles = np.arange(2 * points) * np.pi / points  # tips at even multiples, notches at odd ones
        radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
        poly = Polygon(np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1))
        ours = shapes._star(uv[:, 0], uv[:, 1], points, inner).numpy()
        ref = poly.contains_points(uv.numpy())
        assert (ours != ref).mean() < 1e-3  # only points on the boundary may differ


def test_shape_area_is_the_requested_fraction_for_every_class():
    labels = torch.arange(8).repeat(20)
    p = torch.rand(len(labels), shapes._N_PARAMS, generator=torch.Generator().manual_seed(0))
    cov = shapes._coverage(labels, shapes._shape_params(p, labels), 64)  # (n, 1, 64, 64)
    requested = 0.07 + 0.15 * p[:, 0]
    assert (cov.mean((1, 2, 3)) - requested).abs().max() < 0.01


def test_shapes_colour_statistics_do_not_give_the_class():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = make_shapes(1600), make_shapes(800, split="test")

    def colour_stats(x: torch.Tensor) -> np.ndarray:
        x = x.float() / 255
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).numpy()  # per-image mean and std of R, G, B

    def probe_accuracy(tr: torch.Tensor, te: torch.Tensor) -> float:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        return probe.fit(colour_stats(tr), train.labels.numpy()).score(colour_stats(te), test.labels.numpy())

    chance = 1 / train.num_classes
    assert probe_accuracy(train.images, test.images) < 2 * chance
    # positive control: the same probe finds a colour shortcut when there is one (a class-dependent tint)
    palette = torch.rand(train.num_classes, 3, 1, 1, generator=torch.Generator().manual_seed(0)) * 255
    tint = lambda d: (0.6 * d.images + 0.4 * palette[d.labels]).round().to(torch.uint8)  # noqa: E731
    assert probe_accuracy(tint(train), tint(test)) > 4 * chance


# --- the real CIFAR-10 copy -----------------------------------------------------------------------------------------
def _real_cifar10() -> Path:
    root = Path(os.environ.get("SIMCLR_DATA_DIR", "/nonexistent"))
    if not (root / "cifar10" / "test").is_dir() and not (root / "cifar-10-batches-py").is_dir():
        pytest.skip("real CIFAR-10 not found: set SIMCLR_DATA_DIR to a dir holding cifar10/ or cifar-10-batches-py/")
    return root


def test_real_cifar10_test_split_and_its_cache(monkeypatch):
    root = _real_cifar10()
    spy = _DecodeSpy(monkeypatch)
    d = load_dataset("cifar10", "test", progress=False)
    assert d.images.shape == (10000, 3, 32, 32) and d.images.dtype == torch.uint8 and d.images.is_contiguous()
    assert d.classes == D.CIFAR10_CLASSES and d.labels.dtype == torch.int64
    assert torch.bincount(d.labels).tolist() == [1000] * 10
    assert torch.bincount(d.labels[:100]).tolist() == [10] * 10  # any prefix is class-balanced (interleaved)
    if (root / "cifar10" / "test").is_dir():  # the JPEG folder: compare with a plain PIL decode
        cats = sorted((root / "cifar10" / "test" / "cat").iterdir())
        first_cat = int((d.labels == 3).nonzero()[0])
        ref = np.array(Image.open(cats[0]).convert("RGB"))
        assert (d.images[first_cat].permute(1, 2, 0).int() - torch.from_numpy(ref).int()).abs().max() <= 2
        assert spy.decoded()  # the first load decodes (a fresh cache dir)
        again = load_dataset("cifar10", "test", progress=False)
        assert not spy.decoded(), "cache miss on an unchanged folder"
        assert torch.equal(again.images, d.images) and torch.equal(again.labels, d.labels)
