"""Execute notebooks top to bottom in place (at the scale the environment asks for) and keep clean outputs.

``python tools/run_notebooks.py notebooks/03_training_loop_lars.ipynb ...`` runs each notebook in a fresh kernel
from its own folder, then keeps what a reader of a stored notebook should see of each progress bar: its final
state (a ``\\r``-overwritten stream line is reduced to its last segment; lines a bar left behind are dropped).
Prints the minutes each notebook took. Run it from the repository root with ``SIMCLR_SMOKE`` unset for the
default scale (the stored outputs), or ``SIMCLR_SMOKE=1`` to try a change in seconds.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

BAR = re.compile(r"^\s*[^\n]*\d+%\|")  # a tqdm text bar line


def final_state(text: str) -> str:
    """A stream's text as a terminal shows it at the end: each line's last ``\\r`` segment, and of the lines of
    one progress bar only the last (tqdm in a notebook without widgets prints each update on a new line)."""
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    kept: list[str] = []
    for line in lines:
        if kept and BAR.match(line) and BAR.match(kept[-1]) and line.split(":")[0] == kept[-1].split(":")[0]:
            kept[-1] = line  # the same bar again: keep its newest state
        else:
            kept.append(line)
    return "\n".join(kept)


def join_pieces(pieces: list[str]) -> str:
    """One stream from its pieces. The kernel's ``\\r`` that began a piece (a bar's update) was dropped when the
    pieces were stored, so a piece that does not follow a newline overwrites the line, as it did on screen."""
    text = ""
    for piece in pieces:
        text += piece if not text or text.endswith("\n") else "\r" + piece
    return text


def clean(nb: nbformat.NotebookNode) -> None:
    """Reduce each cell's streams to their final state: the pieces of one stream (a bar's updates arrive as many
    outputs when prints interleave) are joined into one output, at the place of its last piece; empty ones go."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        streams = [o for o in cell.get("outputs", []) if o.get("output_type") == "stream"]
        last = {o["name"]: o for o in streams}  # the last piece of each stream keeps its place
        for name, out in last.items():
            out["text"] = final_state(join_pieces([o["text"] for o in streams if o["name"] == name]))
        cell["outputs"] = [o for o in cell.get("outputs", []) if o.get("output_type") != "stream"
                           or (o is last[o["name"]] and o["text"].strip())]


def run(path: Path, timeout: int) -> float:
    """Execute ``path`` in place; return the minutes it took."""
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    clean(nb)
    nbformat.write(nb, path)
    return (time.perf_counter() - t0) / 60


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--timeout", type=int, default=3600, help="seconds a cell may run")
    p.add_argument("--clean-only", action="store_true", help="only reduce the stored streams, execute nothing")
    args = p.parse_args(argv)
    for path in args.notebooks:
        if args.clean_only:
            nb = nbformat.read(path, as_version=4)
            clean(nb)
            nbformat.write(nb, path)
            continue
        print(f"{path.name}: {run(path, args.timeout):.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
