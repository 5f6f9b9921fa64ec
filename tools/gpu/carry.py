"""What travels between this machine and the GPU calls of ``tools/gpu/full_scale.py`` (docs/gpu.md): a call
carries 64 MiB in and brings 8 files of 16 MiB back, and a fresh machine starts bare.

* in: CIFAR-10 as a **pack** of its JPEG files' bytes, deflated (~620 of each file's ~920 bytes are the same
  header): ~18 MB instead of 176 MiB of pixels; ``unpack`` writes the files back for ``load_dataset`` to decode
  and checks the SHA-256 of what it reads against the one recorded when packing.
* both ways: a run's checkpoint as a **portable** one (bf16 weights, no LARS momentum: ~23 MB for ResNet-18, not
  90), from which ``pretrain(cfg, resume=<it>)`` continues on a fresh machine, not bit-exactly.
* out: the **export**, one tar of a call's files cut into 15 MiB parts with its SHA-256, which ``collect`` joins
  and checks here, unpacks into ``runs/gpu_results/``, files into ``docs/gpu/``, and turns into ``.gpu_state/``.

    python tools/gpu/carry.py pack [--data-dir DIR]      # -> .gpu_data/cifar10_jpeg.npz (tools/gpu/prepare.sh)
    python tools/gpu/carry.py collect FILES_AT           # after each call: FILES_AT is the folder the tool named
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simclr_lib.data import ImageData, load_dataset  # noqa: E402
from simclr_lib.runs.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from simclr_lib.runs.registry import file_sha256  # noqa: E402

MiB, SPLITS, PACK_FORMAT = 2**20, ("train", "test"), "simclr-jpeg-pack-v2"
PART_BYTES, EXPORT_LIMIT = 15 * MiB, 60 * MiB  # the device returns files of at most 16 MiB, 64 MiB in all
EXPORT_ORDER = ("stages/*.json", "progress/*.json", "portable/*.pt", "f/*", "e/*.ipynb")  # kept first if too much
NEEDS_PORTABLE = {"c": ("c", "f", "e03", "e04", "e05", "e06"), "d": ("d",)}  # whose portable checkpoint who needs


def images_sha256(data: ImageData) -> str:
    """SHA-256 of a data set's uint8 images and int64 labels."""
    h = hashlib.sha256(data.images.contiguous().numpy().tobytes())
    h.update(data.labels.contiguous().numpy().tobytes())
    return h.hexdigest()


def pack(data_dir: Path, out: Path) -> dict:
    """Write the pack ``out`` (.npz) of the JPEG folder ``data_dir/cifar10``; returns its file count and sizes."""
    root = data_dir / "cifar10"
    files = sorted(p for s in SPLITS for p in (root / s).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    raws = [p.read_bytes() for p in files]
    meta = dict(format=PACK_FORMAT, names=[p.relative_to(root).as_posix() for p in files],
                sha256={s: images_sha256(load_dataset("cifar10", s, data_dir, progress=False)) for s in SPLITS})
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_name(out.name + ".tmp.npz"), blob=np.frombuffer(b"".join(raws), dtype=np.uint8),
                        offsets=np.cumsum([0] + [len(r) for r in raws]), meta=np.array(json.dumps(meta)))
    os.replace(out.with_name(out.name + ".tmp.npz"), out)
    return dict(files=len(raws), jpeg_bytes=sum(map(len, raws)), pack_bytes=out.stat().st_size)


def unpack(path: Path, to: Path) -> dict:
    """Write the pack's files under ``to/cifar10`` (once) and check what ``load_dataset`` reads; a report."""
    done = to / "cifar10" / "unpacked.json"
    if done.is_file():
        return dict(json.loads(done.read_text()), reused=True)
    with np.load(path, allow_pickle=False) as z:
        meta, blob, off = json.loads(str(z["meta"])), z["blob"].tobytes(), z["offsets"]
    if meta.get("format") != PACK_FORMAT:
        raise ValueError(f"{path} is not a {PACK_FORMAT} file; make it again with tools/gpu/prepare.sh")
    for i, name in enumerate(meta["names"]):
        (to / "cifar10" / name).parent.mkdir(parents=True, exist_ok=True)
        (to / "cifar10" / name).write_bytes(blob[off[i]:off[i + 1]])
    splits = {s: load_dataset("cifar10", s, to, progress=False) for s in SPLITS}  # a different libjpeg-turbo may
    report = dict(pack=str(path), splits={s: dict(n=len(d), sha256_match=images_sha256(d) == meta["sha256"][s])
                                          for s, d in splits.items()})  # decode a few pixels differently: said here
    done.write_text(json.dumps(report, indent=2))
    return dict(report, reused=False)


def bf16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors as bf16 on the CPU; integer buffers (BatchNorm's counters) as they are."""
    return {k: v.detach().to("cpu", torch.bfloat16 if v.is_floating_point() else v.dtype) for k, v in state.items()}


def save_portable(ckpt: Path, dest: Path) -> dict:
    """Write the portable form of the checkpoint ``ckpt`` to ``dest``; returns its epoch and size."""
    c = load_checkpoint(ckpt)
    optimizer = dict(state={}, param_groups=c["optimizer"]["param_groups"])  # LARS restarts its momentum
    save_checkpoint(dict(c, model=bf16(c["model"]), optimizer=optimizer, portable="bf16, no momentum"), dest)
    return dict(epoch=int(c["epoch"]), bytes=dest.stat().st_size)


def import_state(state: Optional[Path], out: Path) -> list[str]:
    """Copy the carried state into ``out`` where ``out`` lacks it (a warm machine keeps its own); the copied."""
    files = sorted(p for p in state.rglob("*") if p.is_file()) if state is not None and state.is_dir() else []
    copied = [p.relative_to(state) for p in files if not (out / p.relative_to(state)).exists()]
    for rel in copied:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(state / rel, out / rel)
    return [str(r) for r in copied]


def export(out: Path, dest: Path, since: float) -> dict:
    """Tar the files under ``out`` written since ``since`` (epoch seconds; ``EXPORT_ORDER`` first, at most
    ``EXPORT_LIMIT`` bytes) into ``dest/export.tar.NN`` parts and ``dest/export_manifest.json``.

    Returns:
        The manifest: ``files``, ``parts``, the tar's ``sha256``, ``dropped_over_limit``.
    """
    found = list(dict.fromkeys(p for pattern in EXPORT_ORDER for p in sorted(out.glob(pattern))
                               if p.stat().st_mtime >= since))
    kept = [p for i, p in enumerate(found) if sum(f.stat().st_size for f in found[:i + 1]) <= EXPORT_LIMIT]
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("export.tar.*"):
        old.unlink()
    tar_path, parts = out / "export.tar", []
    with tarfile.open(tar_path, "w") as tar:
        for p in kept:
            tar.add(p, arcname=str(p.relative_to(out)))
    with open(tar_path, "rb") as f:
        while block := f.read(PART_BYTES):
            parts.append(f"export.tar.{len(parts):02d}")
            (dest / parts[-1]).write_bytes(block)
    manifest = dict(files=[str(p.relative_to(out)) for p in kept], parts=parts, sha256=file_sha256(tar_path),
                    dropped_over_limit=[str(p.relative_to(out)) for p in found if p not in kept])
    tar_path.unlink()
    (dest / "export_manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def unpack_export(files_at: Path, results: Path) -> dict:
    """Join ``files_at``'s export parts, check their SHA-256 and extract them into ``results``; the manifest."""
    manifest = json.loads((files_at / "export_manifest.json").read_text())
    results.mkdir(parents=True, exist_ok=True)
    tar_path = results / "export.tar"
    tar_path.write_bytes(b"".join((files_at / part).read_bytes() for part in manifest["parts"]))
    if file_sha256(tar_path) != manifest["sha256"]:
        raise ValueError(f"the export parts in {files_at} do not match their manifest (a part is missing or cut)")
    with tarfile.open(tar_path) as tar:
        tar.extractall(results, filter="data")  # refuses absolute paths, '..' and links out of results
    tar_path.unlink()
    return manifest


def collect(files_at: Path, results: Path, docs: Path, state: Path) -> dict[str, dict]:
    """Unpack the export in ``files_at`` into ``results``; copy the real (not dry-run) stage JSONs and full-scale
    notebooks into ``docs``; rebuild ``state`` from the stage JSONs, progress and the one portable checkpoint an
    unfinished stage needs (~23 MB each: the carry holds one; d runs last, so c's users give way). The stages."""
    manifest = unpack_export(files_at, results)
    done = {p.stem: json.loads(p.read_text()) for p in sorted((results / "stages").glob("*.json"))}
    (docs / "notebooks").mkdir(parents=True, exist_ok=True)
    for name in (n for n, rec in done.items() if not rec.get("dry_run")):
        shutil.copy2(results / "stages" / f"{name}.json", docs / f"{name}.json")
    for nb in sorted((results / "e").glob("*.full.ipynb")):
        shutil.copy2(nb, docs / "notebooks" / nb.name.replace(".full", ""))
    for sub in ("stages", "progress", "portable"):
        shutil.rmtree(state / sub, ignore_errors=True)
        if sub != "portable" and (results / sub).is_dir():
            shutil.copytree(results / sub, state / sub)
    needed = [run for run, users in NEEDS_PORTABLE.items()
              if (results / "portable" / f"{run}.pt").is_file() and any(u not in done for u in users)][-1:]
    for run in needed:
        (state / "portable").mkdir(parents=True, exist_ok=True)
        shutil.copy2(results / "portable" / f"{run}.pt", state / "portable" / f"{run}.pt")
    size = sum(f.stat().st_size for f in state.rglob("*") if f.is_file()) / MiB
    print(f"unpacked {len(manifest['files'])} files into {results}; not brought back (over the limit): "
          f"{manifest['dropped_over_limit'] or 'none'}\nstate for the next call: {state} ({size:.1f} MiB, "
          f"portable: {needed})\n" + "\n".join(f"  {n:>4}: {r['status']}{' (dry run)' * bool(r.get('dry_run'))}"
                                                for n, r in done.items()))
    return done


def main(argv: Optional[list[str]] = None) -> None:
    """Command line: ``pack`` or ``collect`` (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="CIFAR-10's JPEG folder -> the pack a call carries")
    pk.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SIMCLR_DATA_DIR", ROOT / "data")))
    pk.add_argument("--out", type=Path, default=ROOT / ".gpu_data" / "cifar10_jpeg.npz")
    co = sub.add_parser("collect", help="file what a call brought back; set up the next call")
    co.add_argument("files_at", type=Path, help="folder holding export_manifest.json and export.tar.NN")
    co.add_argument("--results", type=Path, default=ROOT / "runs" / "gpu_results")
    co.add_argument("--docs", type=Path, default=ROOT / "docs" / "gpu")
    co.add_argument("--state", type=Path, default=ROOT / ".gpu_state")
    a = p.parse_args(argv)
    if a.command == "pack":
        print(json.dumps(pack(a.data_dir, a.out), indent=2))
    else:
        collect(a.files_at, a.results, a.docs, a.state)


if __name__ == "__main__":
    main()
