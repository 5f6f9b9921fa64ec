"""The student edition of the notebooks: every exercise's answer replaced by a stub (issue 12, item 3).

The convention, in a solution notebook ``notebooks/NN_*.ipynb``:

* An exercise's code cell is tagged ``exercise`` (cell metadata ``tags``). Its answer sits between a line
  ``# BEGIN SOLUTION`` and a line ``# END SOLUTION`` (one block or more). The student edition replaces each block by
  ``raise NotImplementedError("exercise: write this")`` at the ``BEGIN`` line's indentation; everything outside the
  markers (the ``def`` line, a docstring above the ``BEGIN`` line, the checker call) is kept, so the cell still runs
  and its checker says "not done yet" (:func:`simclr_lib.teaching.exercises.one_line_verdict`).
* A cell tagged ``solution-only`` (the answer to a conceptual question, a printout that gives an answer away) is
  replaced by the markdown cell :data:`PLACEHOLDER`; a placeholder, not a gap, so that cell ``k`` of one edition is
  cell ``k + 1`` of the other (the student edition starts with a cell of its own).
* Markers outside an ``exercise`` cell, an ``exercise`` cell without them, or unpaired markers are errors: a
  solution must never reach the student edition by mistake.

The student edition also has every output and execution count cleared, no per-cell execution timestamps, a first
markdown cell that says what it is and where the solutions are, and its Colab badge pointing at itself. The same
input gives byte-identical output (``tests/test_student.py`` checks that the committed editions are in sync).
``python tools/student.py`` regenerates ``notebooks/student/`` for every notebook that has an exercise cell.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import textwrap
from pathlib import Path

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("exercise: write this")'
EXERCISE_TAG, SOLUTION_ONLY_TAG = "exercise", "solution-only"
PLACEHOLDER = "*(answer in the solution edition)*"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"  # the repository's notebooks (an editable install)
STUDENT_DIR = "student"
BANNER_ID = "student-edition"


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _source(text: str) -> list[str]:
    """A cell's ``source`` as Jupyter stores it: one string per line, each ending with a newline but the last."""
    return text.splitlines(keepends=True)


def stub_solutions(text: str) -> tuple[str, int]:
    """Replace every ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` block of a cell's source by :data:`STUB`.

    Args:
        text: the source of an ``exercise`` cell.

    Returns:
        The student's source and the number of blocks replaced.

    Raises:
        ValueError: markers unpaired or nested.
    """
    out, inside, blocks = [], False, 0
    for line in text.split("\n"):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"nested {BEGIN!r}")
            inside, blocks = True, blocks + 1
            out.append(line[:len(line) - len(line.lstrip())] + STUB)
        elif marker == END:
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r}")
    return "\n".join(out), blocks


def _banner(name: str) -> dict:
    text = (f"**Student edition** of `{name}`. Each exercise's code cell holds a stub that raises "
            "`NotImplementedError`: replace it with your answer and run the cell; its checker says \"not done yet\" "
            "until you have written it, then whether it is right. A later cell that uses your function works once "
            "you have written it.\n\n"
            "The solutions, and the outputs of a real run, are in the solution edition, "
            f"[`notebooks/{name}`](../{name}). This file is generated from it by `python tools/student.py`: edit the solution notebook, "
            "not this one.")
    text = "\n\n".join(textwrap.fill(par, width=115, break_long_words=False, break_on_hyphens=False)
                       for par in text.split("\n\n"))
    return {"cell_type": "markdown", "id": BANNER_ID, "metadata": {}, "source": _source(text)}


def _student_cell(cell: dict, name: str, counts: dict) -> dict:
    """One cell of the student edition (a new dict; ``cell`` is not changed)."""
    text, tags = "".join(cell["source"]), _tags(cell)
    if SOLUTION_ONLY_TAG in tags:
        counts["replaced"] += 1
        ids = {"id": cell["id"]} if "id" in cell else {}  # nbformat >= 4.5 has cell ids
        return {"cell_type": "markdown", **ids, "metadata": {}, "source": _source(PLACEHOLDER)}
    new = copy.deepcopy(cell)
    new.get("metadata", {}).pop("execution", None)
    if EXERCISE_TAG in tags:
        if cell["cell_type"] != "code":
            raise ValueError(f"{name}: an {EXERCISE_TAG!r}-tagged cell must be a code cell")
        text, blocks = stub_solutions(text)
        if not blocks:
            raise ValueError(f"{name}: an {EXERCISE_TAG!r} cell without {BEGIN!r} ... {END!r}")
        counts["stubbed"], counts["solutions"] = counts["stubbed"] + 1, counts["solutions"] + blocks
    elif BEGIN in text or END in text:
        raise ValueError(f"{name}: solution markers in a cell not tagged {EXERCISE_TAG!r}")
    if cell["cell_type"] == "markdown":  # the Colab badge opens this edition
        text = text.replace(f"/blob/main/notebooks/{name}", f"/blob/main/notebooks/{STUDENT_DIR}/{name}")
    if cell["cell_type"] == "code":
        new["outputs"], new["execution_count"] = [], None
    new["source"] = _source(text)
    return new


def has_exercises(path: Path) -> bool:
    """Whether the notebook at ``path`` has a cell tagged ``exercise``."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return any(EXERCISE_TAG in _tags(c) for c in nb["cells"])


def student_text(src_path: Path) -> tuple[str, dict]:
    """The student edition of the solution notebook at ``src_path``, as the text of an ``.ipynb`` file.

    Returns:
        The text (JSON with one-space indents and a trailing newline, as the solution notebooks are stored) and the
        counts: ``cells`` (in the student edition), ``stubbed`` (exercise cells), ``solutions`` (blocks replaced),
        ``replaced`` (``solution-only`` cells replaced by :data:`PLACEHOLDER`).
    """
    src_path = Path(src_path)
    nb = json.loads(src_path.read_text(encoding="utf-8"))
    counts = dict(cells=0, stubbed=0, solutions=0, replaced=0)
    cells = [_banner(src_path.name)] + [_student_cell(c, src_path.name, counts) for c in nb["cells"]]
    counts["cells"] = len(cells)
    metadata = {k: v for k, v in nb.get("metadata", {}).items() if k != "widgets"}  # widget state is an output
    out = dict(nb, cells=cells, metadata=metadata)
    return json.dumps(out, indent=1, ensure_ascii=False) + "\n", counts


def make_student_edition(src_path: Path, dst_path: Path) -> dict:
    """Write the student edition of the solution notebook ``src_path`` to ``dst_path`` (see the module docstring).

    Args:
        src_path: a solution notebook.
        dst_path: where the student edition goes (its folder is created).

    Returns:
        The counts of :func:`student_text`.
    """
    text, counts = student_text(src_path)
    dst_path = Path(dst_path)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    if not dst_path.is_file() or dst_path.read_text(encoding="utf-8") != text:  # unchanged: leave the mtime alone
        dst_path.write_text(text, encoding="utf-8")
    return counts


HANDOUT_README = """# SimCLR, step by step: the student editions

Open the notebooks in order ({names}). Each exercise cell holds a stub that raises `NotImplementedError`:
write your answer there and run the cell; its checker prints one line: "correct", "not right yet" with a hint,
or "not done yet". Your augmentation (notebook 01), your loss (02) and your training step (03) are what trains
the model in notebook 03, once they pass their checkers (they are kept in `my_simclr/` beside the notebooks).

Install: `pip install "simclr-lib @ git+{repo}@v{version}"` (or use each notebook's Colab badge).
"""


def write_handout(out_dir: Path, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """A folder to hand to students: every notebook's student edition (a notebook without exercises as it is)
    and a README; no solutions. Refuses a folder that exists and is not empty (nothing is overwritten)."""
    from simclr_lib import __version__
    from simclr_lib.teaching.notebook import REPO_URL

    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new folder for the hand-out")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted(notebooks.glob("*.ipynb")):
        text = student_text(src)[0] if has_exercises(src) else src.read_text(encoding="utf-8")
        (out_dir / src.name).write_text(text, encoding="utf-8")
        written.append(out_dir / src.name)
    names = ", ".join(p.stem for p in written)
    (out_dir / "README.md").write_text(HANDOUT_README.format(names=names, repo=REPO_URL, version=__version__))
    return written + [out_dir / "README.md"]


def main(argv: list[str] | None = None) -> int:
    """``python tools/student.py [--notebooks DIR] [--check | --handout OUT]``: regenerate ``DIR/student/`` (or,
    with ``--check``, only say which student editions are out of date and return 1 if any is; with ``--handout``,
    write a folder to hand to students)."""
    p = argparse.ArgumentParser(prog="python tools/student.py", description=main.__doc__)
    p.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="the solution notebooks' folder")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a student edition is stale")
    p.add_argument("--handout", type=Path, metavar="DIR",
                   help="write a hand-out folder for students (student editions + README, no solutions) and stop")
    args = p.parse_args(argv)
    if args.handout is not None:
        try:
            written = write_handout(args.handout, args.notebooks)
        except FileExistsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"hand-out written to {args.handout}: {len(written)} files, no solutions")
        return 0
    out_dir, stale = args.notebooks / STUDENT_DIR, []
    sources = [s for s in sorted(args.notebooks.glob("*.ipynb")) if has_exercises(s)]
    for src in sources:
        dst = out_dir / src.name
        if args.check:
            if not dst.is_file() or dst.read_text(encoding="utf-8") != student_text(src)[0]:
                stale.append(dst)
            continue
        counts = make_student_edition(src, dst)
        print(f"{os.path.relpath(dst)}: {counts['stubbed']} exercise cell(s) stubbed, {counts['replaced']} "
              "solution-only cell(s) replaced")
    extra = sorted(set(out_dir.glob("*.ipynb")) - {out_dir / s.name for s in sources})
    for path in extra:  # its solution notebook is gone or has no exercise any more
        if args.check:
            stale.append(path)
        else:
            path.unlink()
            print(f"removed {os.path.relpath(path)}: no exercise cell in a solution notebook of that name")
    for path in stale:
        print(f"out of date: {os.path.relpath(path)}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
