"""Execute notebooks top to bottom in place (at the scale the environment asks for) and keep clean outputs.

``python tools/run_notebooks.py notebooks/03_training_loop_lars.ipynb ...`` runs each notebook in a fresh kernel
from its own folder, then keeps what a reader of a stored notebook should see of each progress bar: its final
state (a ``\\r``-overwritten stream line is reduced to its last segment; lines a bar left behind are dropped; a
tqdm widget bar becomes a text line). No widget view is stored: a reader without a kernel could not draw it.
Prints the minutes each notebook took. Run it from the repository root with ``SIMCLR_SMOKE`` unset for the
default scale (the stored outputs), or ``SIMCLR_SMOKE=1`` to try a change in seconds.
"""
from __future__ import annotations

import argparse
import html
import itertools
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from tqdm.std import Bar

BAR = re.compile(r"^\s*[^\n]*\d+%\|")  # a tqdm text bar line
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # an output that is a live widget
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"  # the widgets' last state, in the notebook's metadata
TQDM_PARTS = [("HTMLModel", "FloatProgressModel", "HTMLModel"), ("HTMLModel", "IntProgressModel", "HTMLModel")]


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


def tqdm_line(model_id: str, states: dict) -> str | None:
    """The final line of the tqdm widget bar ``model_id`` as tqdm's text bar prints it, or None when it is not a
    bar a reader still sees (another widget, a ``leave=False`` bar hidden at its end, or no stored state).

    tqdm's notebook bar is an HBox of an HTML description, a progress bar and an HTML counter; the output's own
    ``text/plain`` is the bar as it was first displayed (0 %), so the final line is rebuilt from the stored state.
    """
    def model(ref: str) -> dict:
        return states.get(ref.removeprefix("IPY_MODEL_"), {})

    box = model(model_id)
    parts = [model(ref) for ref in box.get("state", {}).get("children", [])]
    if box.get("model_name") != "HBoxModel" or tuple(p.get("model_name") for p in parts) not in TQDM_PARTS:
        return None
    layout = model(box["state"].get("layout", "")).get("state", {})
    if layout.get("visibility") == "hidden" or layout.get("display") == "none":
        return None
    left, right = (html.unescape(p["state"].get("value", "")).replace("\u2007", " ") for p in parts[::2])
    progress = parts[1]["state"]
    if not left:  # no total: tqdm shows only the counter
        return right
    frac = progress.get("value", 0) / progress["max"] if progress.get("max") else 0.0
    return f"{left}|{format(Bar(min(max(frac, 0.0), 1.0)), '')}|{right}"


def unwidget(nb: nbformat.NotebookNode) -> None:
    """Replace each widget view with what a reader of the stored notebook sees without a kernel: a tqdm bar
    becomes a text output holding its final line; any other widget (the sliders and forms of
    ``simclr_lib.teaching.widgets``, whose default figure is an ordinary output of its own) is dropped, and so is
    the widgets' stored state (``metadata.widgets``)."""
    states = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                kept.append(out)
            elif line := tqdm_line(view.get("model_id", ""), states):
                kept.append(nbformat.v4.new_output("display_data", data={"text/plain": line}))
        cell["outputs"] = kept
    nb.get("metadata", {}).pop("widgets", None)


def join_streams(outputs: list) -> list:
    """One run of consecutive stream outputs with the pieces of each stream (a bar's updates arrive as many
    outputs when prints interleave) joined into one output at the place of its last piece; empty ones go."""
    last = {o["name"]: o for o in outputs}  # the last piece of each stream keeps its place
    for name, out in last.items():
        out["text"] = final_state(join_pieces([o["text"] for o in outputs if o["name"] == name]))
    return [o for o in outputs if o is last[o["name"]] and o["text"].strip()]


def clean(nb: nbformat.NotebookNode) -> None:
    """Drop widget views (:func:`unwidget`), then reduce each cell's streams to their final state
    (:func:`join_streams` on each run of streams between other outputs: a figure or a bar's line keeps its place
    between the prints before and after it)."""
    unwidget(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept: list = []
        for is_stream, run_ in itertools.groupby(cell.get("outputs", []), lambda o: o.get("output_type") == "stream"):
            kept += join_streams(list(run_)) if is_stream else list(run_)
        cell["outputs"] = kept


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
    p.add_argument("--clean-only", action="store_true", help="only clean the stored outputs, execute nothing")
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
