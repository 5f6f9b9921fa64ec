"""The student edition (issue 12, item 3): generated from the solution notebooks, in sync, with no solution left in
it, and its checker cells say "not done yet" instead of crashing."""
import inspect
import itertools
import json
import sys
from pathlib import Path

import pytest

from simclr_lib.teaching import exercises as ex

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import student  # noqa: E402  (tools/student.py: a repository tool, not part of the package)

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
STUDENT_DIR = NB_DIR / student.STUDENT_DIR
SOLUTIONS = [p for p in sorted(NB_DIR.glob("*.ipynb")) if student.has_exercises(p)]
PENDING: tuple[str, ...] = ()  # notebooks whose exercises are not tagged yet


def _nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _solution_lines(text: str) -> list[str]:
    """The stripped, non-blank lines between the markers of one cell."""
    lines, inside = [], False
    for line in text.split("\n"):
        if line.strip() in (student.BEGIN, student.END):
            inside = line.strip() == student.BEGIN
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def _stub(*args, **kwargs):
    raise NotImplementedError("exercise: write this")


# (a) the committed student editions are what the generator makes now

def test_every_notebook_with_a_checker_has_tagged_exercises():
    for path in sorted(NB_DIR.glob("*.ipynb")):
        if any("simclr_lib.teaching.exercises" in _text(c) for c in _nb(path)["cells"]) and not path.name.startswith(PENDING):
            assert student.has_exercises(path), f"{path.name}: tag its exercise cell 'exercise' (tools/student.py)"


def test_student_editions_are_in_sync():
    assert SOLUTIONS, "no solution notebook has an 'exercise'-tagged cell"
    assert sorted(p.name for p in STUDENT_DIR.glob("*.ipynb")) == [p.name for p in SOLUTIONS], \
        "run: python tools/student.py"
    for src in SOLUTIONS:
        text, counts = student.student_text(src)
        assert counts["stubbed"] >= 1
        assert (STUDENT_DIR / src.name).read_text(encoding="utf-8") == text, \
            f"notebooks/student/{src.name} is out of date; run: python tools/student.py"
        assert student.student_text(src)[0] == text, "the generator is not deterministic"


def test_student_editions_are_clean():
    for path in sorted(STUDENT_DIR.glob("*.ipynb")):
        cells = _nb(path)["cells"]
        assert cells[0]["id"] == student.BANNER_ID and "Student edition" in _text(cells[0])
        assert f"(../{path.name})" in _text(cells[0]), "the banner links the solution edition"
        for c in cells:
            assert "execution" not in c["metadata"]
            if c["cell_type"] == "code":
                assert c["outputs"] == [] and c["execution_count"] is None, f"{path.name}: a stored output"


# (b) no solution survives

@pytest.mark.parametrize("src", SOLUTIONS, ids=lambda p: p.stem)
def test_no_solution_in_the_student_edition(src):
    solution, edition = _nb(src)["cells"], _nb(STUDENT_DIR / src.name)["cells"]
    by_id = {c["id"]: c for c in edition}
    assert not any(student.BEGIN in _text(c) or student.END in _text(c) for c in edition)
    for cell in solution:
        tags = cell.get("metadata", {}).get("tags", [])
        if student.SOLUTION_ONLY_TAG in tags:
            assert _text(by_id[cell["id"]]) == student.PLACEHOLDER
        if student.EXERCISE_TAG not in tags:
            continue
        kept = student.stub_solutions(_text(cell))[0]
        assert student.STUB in kept
        outside = {line.strip() for line in kept.split("\n")}
        leaked = [s for s in _solution_lines(_text(cell)) if s not in outside and s in _text(by_id[cell["id"]])]
        assert not leaked, f"{src.name}: solution lines in the student edition: {leaked}"
        assert _text(by_id[cell["id"]]) == kept


# the generator's rules, on a made-up notebook

IDS = itertools.count()


def _cell(kind: str, text: str, tags=(), **extra) -> dict:
    c = {"cell_type": kind, "id": f"cell-{next(IDS)}", "metadata": {"tags": list(tags)} if tags else {},
         "source": student._source(text)}
    return dict(c, execution_count=3, outputs=[{"output_type": "stream", "name": "stdout", "text": ["x\n"]}],
                **extra) if kind == "code" else c


def _write(tmp_path: Path, cells: list[dict]) -> Path:
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}, "widgets": {"state": 1}},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "09_made_up.ipynb"
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def test_generator_rules(tmp_path):
    exercise = ('from simclr_lib.teaching.exercises import check_knn\n\nclass K:\n    def knn(self, a):\n        """Doc."""\n'
                f"        {student.BEGIN}\n        secret = a + 1\n        return secret\n        {student.END}\n\n"
                "print(check_knn(K().knn))")
    src = _write(tmp_path, [_cell("markdown", "[x](https://c/blob/main/notebooks/09_made_up.ipynb)"),
                            _cell("code", exercise, tags=["exercise"]),
                            _cell("code", "print('the answer is 42')", tags=["solution-only"]),
                            _cell("markdown", "Why? Because.", tags=["solution-only"])])
    counts = student.make_student_edition(src, tmp_path / "student" / src.name)
    out = (tmp_path / "student" / src.name).read_text(encoding="utf-8")
    assert counts == dict(cells=5, stubbed=1, solutions=1, replaced=2)
    cells = json.loads(out)["cells"]
    assert "blob/main/notebooks/student/09_made_up.ipynb" in _text(cells[1])
    solution = f"        secret = a + 1\n        return secret\n        {student.END}\n"
    assert _text(cells[2]) == exercise.replace(solution, "").replace(student.BEGIN, student.STUB)
    assert cells[2]["outputs"] == [] and cells[2]["execution_count"] is None
    assert [_text(c) for c in cells[3:]] == [student.PLACEHOLDER] * 2 and cells[3]["cell_type"] == "markdown"
    assert "secret" not in out and "42" not in out and "Because" not in out and "widgets" not in out
    assert student.make_student_edition(src, tmp_path / "again.ipynb") == counts
    assert (tmp_path / "again.ipynb").read_text(encoding="utf-8") == out, "not deterministic"


@pytest.mark.parametrize("text, tags, error", [
    ("def f():\n    return 1", ["exercise"], "without"),
    (f"def f():\n    {student.BEGIN}\n    return 1", ["exercise"], "without"),
    (f"def f():\n    return 1\n    {student.END}", ["exercise"], "without"),
    (f"def f():\n    {student.BEGIN}\n    {student.BEGIN}\n    return 1\n    {student.END}", ["exercise"], "nested"),
    (f"def f():\n    {student.BEGIN}\n    return 1\n    {student.END}", [], "not tagged"),
])
def test_generator_refuses_to_leak(tmp_path, text, tags, error):
    src = _write(tmp_path, [_cell("code", text, tags=tags)])
    with pytest.raises(ValueError, match=error):
        student.student_text(src)


def test_main_regenerates_and_checks(tmp_path, capsys):
    src = _write(tmp_path, [_cell("code", f"def f():\n    {student.BEGIN}\n    return 1\n    {student.END}",
                                  tags=["exercise"])])
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "07_gone.ipynb").write_text("{}")
    assert student.main(["--notebooks", str(tmp_path), "--check"]) == 1
    assert student.main(["--notebooks", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == [src.name]
    assert student.main(["--notebooks", str(tmp_path), "--check"]) == 0
    capsys.readouterr()


# (c) every checker says "not done yet" for a stub

CHECKERS = [f for name, f in inspect.getmembers(ex, inspect.isfunction) if name.startswith("check_")]


def test_the_checkers_are_found():
    assert len(CHECKERS) >= 6


@pytest.mark.parametrize("check", CHECKERS, ids=lambda f: f.__name__)
def test_checker_reports_not_done(check, capsys):
    verdict = check(_stub)
    assert not verdict and isinstance(verdict, ex.Verdict)
    print(verdict)  # what the notebook cell does: one line, no stray return value
    out, err = capsys.readouterr()
    assert out == ex.NOT_DONE.format(name="_stub") + "\n" and err == ""
    assert out.startswith("not done yet: _stub raises NotImplementedError")


def test_only_the_readers_not_implemented_error_is_caught():
    @ex.one_line_verdict
    def check_broken(fn):
        raise NotImplementedError("a bug in the checker")

    with pytest.raises(NotImplementedError, match="bug in the checker"):
        check_broken(lambda: None)
    assert ex.check_augmentation_pipeline.__name__ == "check_augmentation_pipeline"
    assert "notebook 01" in ex.check_augmentation_pipeline.__doc__


# (d) the student edition runs top to bottom, and its checker cell says "not done yet"

def _run_cells(path: Path) -> list[str]:
    """Execute the code cells of a notebook in one namespace, in-process (line magics dropped); each cell's stdout."""
    import contextlib
    import io

    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg", force=True)
    ns, printed = {"__name__": "__main__"}, []
    for i, c in enumerate(_nb(path)["cells"]):
        if c["cell_type"] == "code":
            src = "\n".join(line for line in _text(c).split("\n") if not line.lstrip().startswith(("%", "!")))
            with contextlib.redirect_stdout(io.StringIO()) as buf:
                exec(compile(src, f"{path.name} cell {i}", "exec"), ns)
            printed.append(buf.getvalue())
            plt.close("all")
    return printed


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name, function", [("00_why_simclr", "eq1_loss"),
                                            ("02_infonce_similarity_matrix", "my_nt_xent")])
def test_student_edition_runs_in_smoke_mode(monkeypatch, name, function):
    """nbval does not collect notebooks/student/ (conftest.py): the stored outputs are empty and the stubs raise."""
    monkeypatch.setenv("SIMCLR_SMOKE", "1")
    monkeypatch.delenv("SIMCLR_MODE", raising=False)
    monkeypatch.chdir(STUDENT_DIR)  # where a student's kernel starts
    printed = _run_cells(STUDENT_DIR / f"{name}.ipynb")
    assert any(out.strip() == ex.NOT_DONE.format(name=function) for out in printed), printed[-3:]


def test_the_handout_holds_every_notebook_and_no_solution(tmp_path, capsys):
    out = tmp_path / "handout"
    assert student.main(["--handout", str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.ipynb"))
    assert names == sorted(p.name for p in NB_DIR.glob("*.ipynb")) and (out / "README.md").is_file()
    for path in out.glob("*.ipynb"):
        cells = _nb(path)["cells"]
        assert not any(student.BEGIN in "".join(c["source"]) for c in cells), f"{path.name} holds a solution"
        assert not any(student.SOLUTION_ONLY_TAG in c.get("metadata", {}).get("tags", []) for c in cells)
    assert student.main(["--handout", str(out)]) == 2  # never over an earlier hand-out
    assert "not empty" in capsys.readouterr().err
