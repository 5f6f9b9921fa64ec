"""Pack CIFAR-10 small enough to travel to the GPU machine, and unpack it there as ``cifar-10-batches-py``.

The shared copy of CIFAR-10 is a JPEG image folder (60,000 files, 236 MB on disk, 52.7 MiB of bytes). Decoded, it
is 176 MiB of uint8 pixels, which no lossless coder brings under the 64 MiB a device call may carry. The JPEG
bytes themselves are small, and about 620 of the ~920 bytes of each file are the same JPEG header, so the bytes
of all files, concatenated and deflated (``numpy.savez_compressed``), come to about a third of that.

``pack`` stores the JPEG bytes of every image in the order in which ``simclr_lib.data.load_dataset`` returns them
(files are matched to rows by their decoded pixels), with the labels, the class names and a SHA-256 of the decoded
images. ``unpack`` decodes them with the same decoder the library uses (torchvision's libjpeg-turbo), checks the
SHA-256, and writes torchvision's ``cifar-10-batches-py`` layout, which ``load_dataset`` (and therefore every
stage, test and notebook) reads with ``SIMCLR_DATA_DIR`` pointing at its parent.

    python benchmarks/gpu/pack_data.py --data-dir /work/shared/data --out .gpu_data/cifar10_jpeg.npz
    python benchmarks/gpu/pack_data.py --unpack .gpu_data/cifar10_jpeg.npz --to runs/gpu/data
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPLITS = ("train", "test")
TRAIN_BATCHES = 5  # data_batch_1..5, as in the original release (10,000 images each for CIFAR-10)
FORMAT = "simclr-jpeg-pack-v1"


def images_sha256(images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> str:
    """SHA-256 of a uint8 image tensor's bytes (and of the int64 labels when given)."""
    h = hashlib.sha256(images.contiguous().numpy().tobytes())
    if labels is not None:
        h.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def decode_jpegs(raws: list[bytes], chunk: int = 4096) -> torch.Tensor:
    """Decode JPEG bytes to RGB uint8 as the library does (torchvision's decoder, PIL if that fails).

    Shape: len(raws) files -> (N, 3, H, W) uint8 (every file must have the same size).
    """
    out = []
    for i in range(0, len(raws), chunk):
        part = raws[i:i + chunk]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                from torchvision.io import ImageReadMode, decode_jpeg

                datas = [torch.frombuffer(bytearray(r), dtype=torch.uint8) for r in part]
                out += decode_jpeg(datas, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        except (RuntimeError, ImportError, TypeError):
            from PIL import Image

            out += [torch.from_numpy(np.asarray(Image.open(io.BytesIO(r)).convert("RGB")).copy()).permute(2, 0, 1)
                    for r in part]
    return torch.stack(out)


def _row_key(row: torch.Tensor) -> bytes:
    """A 16-byte digest of one decoded image (to match files to rows)."""
    return hashlib.blake2b(row.contiguous().numpy().tobytes(), digest_size=16).digest()


def jpeg_bytes_in_library_order(folder: Path, images: torch.Tensor) -> list[bytes]:
    """The JPEG file bytes under ``folder`` ordered like ``images`` (matched on decoded pixels)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    raws = [p.read_bytes() for p in files]
    if len(raws) != len(images):
        raise ValueError(f"{folder} holds {len(raws)} JPEG files but load_dataset returned {len(images)} images")
    by_key = {_row_key(img): raw for img, raw in zip(decode_jpegs(raws), raws)}
    missing = [i for i, img in enumerate(images) if _row_key(img) not in by_key]
    if missing:
        raise ValueError(f"{len(missing)} images of load_dataset have no JPEG decoding to the same pixels "
                         f"(first: row {missing[0]}); the library decodes differently from decode_jpegs")
    return [by_key[_row_key(img)] for img in images]


def pack(data_dir: Path, out: Path) -> dict:
    """Write the pack ``out`` (.npz) from the CIFAR-10 image folder under ``data_dir``; returns its metadata."""
    from simclr_lib.data import load_dataset

    arrays: dict[str, np.ndarray] = {}
    meta: dict = dict(format=FORMAT, source=str(data_dir), splits={})
    for split in SPLITS:
        data = load_dataset("cifar10", split, data_dir, progress=False)
        raws = jpeg_bytes_in_library_order(data_dir / "cifar10" / split, data.images)
        offsets = np.cumsum([0] + [len(r) for r in raws], dtype=np.int64)
        arrays[f"{split}_blob"] = np.frombuffer(b"".join(raws), dtype=np.uint8)
        arrays[f"{split}_offsets"] = offsets
        arrays[f"{split}_labels"] = data.labels.numpy().astype(np.uint8)
        meta["classes"] = list(data.classes)
        meta["splits"][split] = dict(n=len(raws), jpeg_bytes=int(offsets[-1]), shape=list(data.images.shape[1:]),
                                     sha256=images_sha256(data.images, data.labels))
    arrays["meta"] = np.array(json.dumps(meta))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    meta["pack_bytes"] = out.stat().st_size
    return meta


def read_pack(path: Path) -> tuple[dict, dict[str, tuple[list[bytes], torch.Tensor]]]:
    """The pack's metadata and, per split, its JPEG bytes and int64 labels."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file (format={meta.get('format')!r})")
        splits = {}
        for split in SPLITS:
            blob, off = z[f"{split}_blob"].tobytes(), z[f"{split}_offsets"]
            raws = [blob[off[i]:off[i + 1]] for i in range(len(off) - 1)]
            splits[split] = (raws, torch.from_numpy(z[f"{split}_labels"].astype(np.int64)))
    return meta, splits


def _write_batch(path: Path, images: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    """One ``cifar-10-batches-py`` file: ``data`` (N, 3072) uint8 rows (R, G, B planes), ``labels`` list."""
    obj = {"batch_label": name, "labels": [int(y) for y in labels],
           "data": images.reshape(len(images), -1).numpy(), "filenames": [f"{i}.jpg" for i in range(len(images))]}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    os.replace(tmp, path)


def unpack(path: Path, to: Path) -> dict:
    """Decode the pack into ``to/cifar-10-batches-py`` (skipped when already there); returns a report.

    The report gives, per split, whether the decoded images match the SHA-256 recorded when packing (a
    different libjpeg-turbo could decode a few pixels differently: the run goes on, and the report says so).
    """
    t0 = time.perf_counter()
    root = to / "cifar-10-batches-py"
    done = root / "unpacked.json"
    if done.is_file():
        return dict(json.loads(done.read_text()), reused=True)
    meta, splits = read_pack(path)
    root.mkdir(parents=True, exist_ok=True)
    report: dict = dict(pack=str(path), pack_bytes=path.stat().st_size, splits={})
    for split, (raws, labels) in splits.items():
        images = decode_jpegs(raws)
        sha = images_sha256(images, labels)
        report["splits"][split] = dict(n=len(raws), sha256_match=sha == meta["splits"][split]["sha256"])
        if split == "test":
            _write_batch(root / "test_batch", images, labels, "testing batch 1 of 1")
            continue
        bounds = np.linspace(0, len(images), TRAIN_BATCHES + 1).round().astype(int)  # 10,000 each for CIFAR-10
        for k in range(TRAIN_BATCHES):
            lo, hi = bounds[k], bounds[k + 1]
            _write_batch(root / f"data_batch_{k + 1}", images[lo:hi], labels[lo:hi],
                         f"training batch {k + 1} of {TRAIN_BATCHES}")
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({"label_names": meta["classes"], "num_cases_per_batch": 10_000, "num_vis": 3072}, f, 2)
    report["seconds"] = time.perf_counter() - t0
    done.write_text(json.dumps(report, indent=2))
    return dict(report, reused=False)


def measure_alternatives(data_dir: Path) -> dict:
    """Sizes of other ways to carry the data: the folder as a tar, the decoded pixels deflated."""
    import zlib

    from simclr_lib.data import load_dataset

    files = [p for p in (data_dir / "cifar10").rglob("*.jpg")]
    sizes = [p.stat().st_size for p in files]
    tar = sum(512 + -(-s // 512) * 512 for s in sizes) + 1024
    pixels = [load_dataset("cifar10", s, data_dir, progress=False).images.numpy().tobytes() for s in SPLITS]
    deflated = sum(len(zlib.compress(p, 6)) for p in pixels)
    return dict(jpeg_files=len(files), jpeg_bytes=sum(sizes), tar_bytes=tar,
                raw_pixel_bytes=sum(len(p) for p in pixels), deflated_pixel_bytes=deflated)


def main() -> None:
    """Command line: pack (default), ``--unpack``, or ``--measure``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None, help="holds cifar10/{train,test}/<class>/*.jpg "
                   "(default: $SIMCLR_DATA_DIR)")
    p.add_argument("--out", type=Path, default=ROOT / ".gpu_data" / "cifar10_jpeg.npz")
    p.add_argument("--unpack", type=Path, default=None, help="a pack to decode into --to")
    p.add_argument("--to", type=Path, default=ROOT / "runs" / "gpu" / "data")
    p.add_argument("--measure", action="store_true", help="also measure the alternatives' sizes")
    args = p.parse_args()
    if args.unpack is not None:
        print(json.dumps(unpack(args.unpack, args.to), indent=2))
        return
    data_dir = args.data_dir or Path(os.environ.get("SIMCLR_DATA_DIR", ROOT / "data"))
    meta = pack(data_dir, args.out)
    if args.measure:
        meta["alternatives"] = measure_alternatives(data_dir)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
