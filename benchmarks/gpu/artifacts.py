"""What goes to and from the GPU machine between calls of ``benchmarks/full_scale.py``.

A device call carries at most 64 MiB in and brings at most 8 files of 16 MiB back, and a machine is given back a
few seconds after a call ends. So everything a later call needs travels:

* **portable checkpoints** (``portable/<stage>.pt``): a pre-training checkpoint with the weights in bf16 and
  without LARS's momentum buffers (about 23 MB for ResNet-18 instead of 90), from which ``pretrain(resume=True)``
  continues on a fresh machine. Such a resume is not bit-exact (weights rounded to bf16 once, momentum restarted
  from zero); the stage JSON lists the epochs where it happened.
* **bf16 weights in parts** (stage f): one ``torch.save`` file cut into parts of at most 16 MiB.
* **the export** (``--export $OUT``): the files this call wrote that matter (stage JSONs, portable checkpoints,
  weights, notebooks), in one tar cut into at most four 15 MiB parts, plus ``export_manifest.json``.
  ``benchmarks/gpu/collect.py`` puts them back together on the development machine.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any, Optional

import torch

MiB = 2**20
PART_BYTES = 15 * MiB  # parts of the export tar (the device returns files of at most 16 MiB)
EXPORT_LIMIT = 60 * MiB  # all files back from one call (the device returns at most 64 MiB)
EXPORT_PRIORITY = ("stages/*.json", "progress/*.json", "portable/*.pt", "f/*", "e/*.ipynb", "b/*.json")


def bf16_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors as bf16 on the CPU; integer buffers (BatchNorm's counters) unchanged."""
    return {k: (v.detach().to("cpu", torch.bfloat16) if v.is_floating_point() else v.detach().cpu())
            for k, v in state.items()}


def portable_from_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A small checkpoint: bf16 weights, the optimizer's hyper-parameters but not its momentum buffers."""
    opt = ckpt["optimizer"]
    return dict(ckpt, model=bf16_state(ckpt["model"]),
                optimizer={"state": {}, "param_groups": opt["param_groups"]},
                portable=dict(weights="bf16", momentum="dropped", epoch=ckpt["epoch"]))


def checkpoint_from_portable(portable: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint ``pretrain(resume=True)`` loads: weights back to fp32 (momentum restarts from zero)."""
    model = {k: (v.float() if v.is_floating_point() else v) for k, v in portable["model"].items()}
    return dict(portable, model=model)


def save_portable(ckpt_path: Path, dest: Path) -> dict:
    """Write the portable form of the checkpoint at ``ckpt_path`` to ``dest``; returns its epoch and size."""
    from simclr_lib.runtime import atomic_torch_save

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    atomic_torch_save(portable_from_checkpoint(ckpt), dest)
    return dict(epoch=int(ckpt["epoch"]), bytes=dest.stat().st_size)


def checkpoint_epoch(path: Path) -> int:
    """The epoch a (full or portable) checkpoint was written at; -1 if there is none."""
    if not path.is_file():
        return -1
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def restore_portable(portable: Path, ckpt_path: Path) -> Optional[int]:
    """Rebuild ``ckpt_path`` from ``portable`` when the portable one is further along; returns its epoch or None."""
    if not portable.is_file() or checkpoint_epoch(portable) <= checkpoint_epoch(ckpt_path):
        return None
    from simclr_lib.runtime import atomic_torch_save

    p = torch.load(portable, map_location="cpu", weights_only=True)
    atomic_torch_save(checkpoint_from_portable(p), ckpt_path)
    return int(p["epoch"])


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def save_parts(obj: Any, folder: Path, name: str, part_bytes: int = 16 * MiB) -> dict:
    """``torch.save(obj)`` cut into ``folder/name.partNN`` files of at most ``part_bytes``; returns their list."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{name}.part*"):
        old.unlink()
    parts = []
    for k, start in enumerate(range(0, len(data), part_bytes)):
        path = folder / f"{name}.part{k:02d}"
        path.write_bytes(data[start:start + part_bytes])
        parts.append(path.name)
    return dict(file=name, parts=parts, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                reassemble=f"cat {name}.part* > {name}")


def load_parts(folder: Path, name: str) -> Any:
    """Join ``folder/name.partNN`` in order and ``torch.load`` the result (``weights_only=True``)."""
    parts = sorted(folder.glob(f"{name}.part*"))
    if not parts:
        raise FileNotFoundError(f"no {name}.part* in {folder}")
    return torch.load(io.BytesIO(b"".join(p.read_bytes() for p in parts)), map_location="cpu", weights_only=True)


def import_state(state: Optional[Path], out: Path) -> list[str]:
    """Copy the carried state (stage JSONs, progress, portable checkpoints) into ``out`` where ``out`` lacks them."""
    if state is None or not state.is_dir():
        return []
    copied = []
    for src in sorted(p for p in state.rglob("*") if p.is_file()):
        dest = out / src.relative_to(state)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            copied.append(str(src.relative_to(state)))
    return copied


def _export_candidates(out: Path, since: float) -> list[Path]:
    """Files under ``out`` written since ``since`` (epoch seconds), in EXPORT_PRIORITY order."""
    seen, files = set(), []
    for pattern in EXPORT_PRIORITY:
        for p in sorted(out.glob(pattern)):
            if p.is_file() and p not in seen and p.stat().st_mtime >= since:
                seen.add(p)
                files.append(p)
    return files


def export(out: Path, dest: Path, since: float, limit: int = EXPORT_LIMIT) -> dict:
    """Tar what this call wrote into ``dest/export.tar.NN`` parts (+ ``export_manifest.json``); see module doc."""
    dest.mkdir(parents=True, exist_ok=True)
    kept, dropped, total = [], [], 0
    for p in _export_candidates(out, since):
        size = p.stat().st_size
        (kept if total + size <= limit else dropped).append(str(p.relative_to(out)))
        total += size if total + size <= limit else 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in kept:
            tar.add(out / rel, arcname=rel)
    data = buf.getvalue()
    parts = []
    for k, start in enumerate(range(0, len(data), PART_BYTES)):
        (dest / f"export.tar.{k:02d}").write_bytes(data[start:start + PART_BYTES])
        parts.append(f"export.tar.{k:02d}")
    manifest = dict(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), files=kept, parts=parts,
                    tar_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    dropped_over_limit=dropped, reassemble="cat export.tar.* > export.tar && tar xf export.tar")
    (dest / "export_manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def read_export(folder: Path) -> tuple[dict, bytes]:
    """The manifest and the joined tar bytes of an export in ``folder`` (checked against its SHA-256)."""
    manifest = json.loads((folder / "export_manifest.json").read_text())
    data = b"".join((folder / p).read_bytes() for p in manifest["parts"])
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ValueError(f"the export parts in {folder} do not match their manifest (a part is missing or cut)")
    return manifest, data
