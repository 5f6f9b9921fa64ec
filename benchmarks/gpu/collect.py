"""File what a GPU call of ``benchmarks/full_scale.py --export $OUT`` brought back, and set up the next call.

    python benchmarks/gpu/collect.py FILES_AT            # FILES_AT: the folder the device tool named

1. joins ``export.tar.NN`` (checked against ``export_manifest.json``) and unpacks it into ``runs/gpu_results/``
   (cumulative over calls: stage JSONs, progress, portable checkpoints, bf16 weight parts, notebooks);
2. copies each finished, non-dry-run stage JSON to ``docs/gpu/<stage>.json`` and each executed notebook to
   ``docs/gpu/notebooks/`` (what to commit);
3. rebuilds ``.gpu_state/`` (carried by the next call, git-ignored) with the stage JSONs, the progress records and
   only the portable checkpoints some unfinished stage still needs (c's until c, f and e03-e06 are done; d's until
   d is done), and prints its size and the stages still to do.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import artifacts  # noqa: E402

STAGES = ("a", "b", "c", "f", "e03", "e04", "e05", "e06", "d")
NEEDS_PORTABLE = {"c": ("c", "f", "e03", "e04", "e05", "e06"), "d": ("d",)}


def unpack_export(files_at: Path, results: Path) -> dict:
    """Join and check the export parts in ``files_at`` and extract them into ``results``; returns the manifest."""
    manifest, data = artifacts.read_export(files_at)
    results.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            if member.name.startswith(("/", "..")) or ".." in Path(member.name).parts or not member.isfile():
                raise ValueError(f"refusing to extract {member.name!r}")
        tar.extractall(results)
    return manifest


def finished(results: Path) -> dict[str, dict]:
    """Stage name -> its JSON, for the stages ``results`` holds."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / "stages").glob("*.json"))}


def publish(results: Path, docs: Path, done: dict[str, dict]) -> list[str]:
    """Copy the real (not dry-run) stage JSONs and the executed notebooks into ``docs``."""
    written = []
    for name, rec in done.items():
        if not rec.get("dry_run"):
            docs.mkdir(parents=True, exist_ok=True)
            shutil.copy2(results / "stages" / f"{name}.json", docs / f"{name}.json")
            written.append(f"{name}.json")
    for nb in sorted((results / "e").glob("*.full.ipynb")):
        (docs / "notebooks").mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb, docs / "notebooks" / nb.name.replace(".full", ""))
        written.append(f"notebooks/{nb.name}")
    return written


def rebuild_state(results: Path, state: Path, done: dict[str, dict]) -> dict:
    """``state`` = stage JSONs + progress + the portable checkpoints unfinished stages need; returns a summary."""
    for sub in ("stages", "progress", "portable"):
        shutil.rmtree(state / sub, ignore_errors=True)
    for sub in ("stages", "progress"):
        if (results / sub).is_dir():
            shutil.copytree(results / sub, state / sub)
    needed = [run for run, users in NEEDS_PORTABLE.items()
              if (results / "portable" / f"{run}.pt").is_file() and any(u not in done for u in users)]
    if len(needed) == 2:  # ~23 MB each: the 64 MiB carry holds one; d runs last, so c's users are given up
        print("warning: carrying only d's portable checkpoint; stages still needing c's model "
              f"({[u for u in NEEDS_PORTABLE['c'] if u not in done]}) must run on the machine that holds it")
        needed = ["d"]
    for run in needed:
        (state / "portable").mkdir(parents=True, exist_ok=True)
        shutil.copy2(results / "portable" / f"{run}.pt", state / "portable" / f"{run}.pt")
    kept = [f"{run}.pt" for run in needed]
    size = sum(p.stat().st_size for p in state.rglob("*") if p.is_file())
    return dict(portable=kept, bytes=size)


def main(argv: list[str] | None = None) -> int:
    """Unpack, publish, rebuild the state, and print what is done and what is left."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files_at", type=Path, help="folder holding export_manifest.json and export.tar.NN")
    p.add_argument("--results", type=Path, default=ROOT / "runs" / "gpu_results")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "gpu")
    p.add_argument("--state", type=Path, default=ROOT / ".gpu_state")
    args = p.parse_args(argv)
    manifest = unpack_export(args.files_at, args.results)
    done = finished(args.results)
    written = publish(args.results, args.docs, done)
    state = rebuild_state(args.results, args.state, done)
    print(f"unpacked {len(manifest['files'])} files into {args.results}"
          + (f"; NOT brought back (over the limit): {manifest['dropped_over_limit']}" if manifest[
              "dropped_over_limit"] else ""))
    for name in STAGES:
        rec = done.get(name)
        print(f"  {name:>4}: " + (f"{rec['status']}{' (dry run)' if rec.get('dry_run') else ''}" if rec else "to do"))
    print(f"docs: {', '.join(written) or 'nothing new'} under {args.docs}")
    print(f"state for the next call: {args.state} ({state['bytes'] / 2**20:.1f} MiB; portable: {state['portable']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
