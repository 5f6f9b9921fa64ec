"""The frame every notebook must have (notebooks/README.md); nbval executes them separately (pytest --nbval-lax)."""
import ast
import json
import re
from pathlib import Path

import pytest

from simclr_lib import __version__
from simclr_lib.teaching.notebook import REPO_URL

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ["00_why_simclr", "01_augmentation_views", "02_infonce_similarity_matrix", "03_training_loop_lars",
            "04_linear_evaluation", "05_tsne_embeddings", "06_experiments", "07_appendix_engineering"]
MAX_DEF_LINES = 15  # "no function or class longer than ~15 lines is defined in a cell"


def _cells(name: str) -> list[dict]:
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text())
    return [dict(c, text="".join(c["source"])) for c in nb["cells"]]


def test_the_series_is_complete():
    assert sorted(p.stem for p in NB_DIR.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_frame(name):
    cells = _cells(name)
    title = cells[0]
    assert title["cell_type"] == "markdown"
    colab = f"https://colab.research.google.com/github/{REPO_URL.split('github.com/')[1]}/blob/main/notebooks/{name}.ipynb"
    assert colab in title["text"], "title cell: Colab badge built from simclr_lib.teaching.notebook.REPO_URL"
    assert "smoke" in title["text"] and "quick" in title["text"], "title cell: time per mode"
    code = [c for c in cells if c["cell_type"] == "code"]
    install = next(c for c in code if "google.colab" in c["text"])
    assert f'REPO_URL = "{REPO_URL}"' in install["text"] and 'if "google.colab" in sys.modules' in install["text"]
    assert f'VERSION = "{__version__}"' in install["text"] and 'f"git+{REPO_URL}@v{VERSION}"' in install["text"], \
        "the install cell pins the release the notebook was written for (simclr_lib.__version__)"
    meta = json.loads((NB_DIR / f"{name}.ipynb").read_text())["metadata"]
    assert meta.get("accelerator") == "GPU" and meta.get("colab", {}).get("gpuType"), "Colab: ask for a GPU runtime"
    assert "GPU runtime" in title["text"], "title cell: the Colab GPU-runtime note"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "SIMCLR_SMOKE" in params[0]["text"], "one parameters-tagged cell reads SIMCLR_SMOKE"
    assert any("nbval-check-output" in c.get("metadata", {}).get("tags", []) for c in code), \
        "at least one deterministic cell checked by nbval (the nbval-check-output cell tag)"
    assert not any("NBVAL_" in c["text"] for c in code), "nbval markers are cell tags, not comments in learner cells"
    if "appendix" in name:  # the engineering appendix has no exercise
        return
    assert any("simclr_lib.teaching.exercises" in c["text"] or "from simclr_lib.teaching.exercises" in c["text"] for c in code), \
        "an exercise checked by simclr_lib.teaching.exercises"


@pytest.mark.parametrize("name", EXPECTED)
def test_cells_are_thin_and_executed(name):
    for c in _cells(name):
        if c["cell_type"] != "code":
            continue
        src = "\n".join(line for line in c["text"].splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                n = node.end_lineno - node.lineno + 1
                assert n <= MAX_DEF_LINES, f"{name}: {node.name} is {n} lines; move it into simclr_lib"
        assert c.get("execution_count") is not None, f"{name}: a cell was never run; store a real run's outputs"


TRAINS = ("train_step(", ".backward()", "build_optimizer(", "pretrain(")


@pytest.mark.parametrize("name", EXPECTED)
def test_what_a_notebook_trains_runs_on_its_device(name):
    """A cell that trains builds its model on the notebook's device (``s.device``), never on the default CPU:
    notebook 03's opened-up step and optimiser race ran on the CPU in full mode on a GPU machine."""
    for c in _cells(name):
        text = c["text"]
        builds = "build_model(" in text or "deepcopy(" in text
        if c["cell_type"] == "code" and builds and any(t in text for t in TRAINS):
            assert "s.device" in text and ".cpu()" not in text, f"{name}: a cell trains off the notebook's device"


# how the notebooks name the modules they print from (the teaching aids live in simclr_lib.teaching)
ALIASES = {"nb": "teaching.notebook", "notebook": "teaching.notebook", "ex": "teaching.experiments",
           **{m: f"teaching.{m}" for m in ("exercises", "experiments", "finetune", "geometry", "shortcut", "plots",
                                           "popular_repos", "learner")},
           "recorder": "runs.recorder", "checkpoint": "runs.checkpoint", "registry": "runs.registry"}


@pytest.mark.parametrize("name", EXPECTED)
def test_printed_library_code_is_public_and_says_where_it_is_taught(name):
    """Every function a notebook shows with ``inspect.getsource`` is public API, and its docstring names the
    notebook that teaches it (d2l's "Defined in section ...")."""
    import importlib
    import re

    for c in _cells(name):
        for target in re.findall(r"getsource\(([\w.]+)\)", c["text"]):
            module, *attrs = target.split(".")
            obj = importlib.import_module(f"simclr_lib.{ALIASES.get(module, module)}")
            for attr in attrs:
                assert not attr.startswith("_"), f"{name} prints the private {target}; make it public"
                obj = getattr(obj, attr)
            assert f"notebook {name[:2]}" in (obj.__doc__ or ""), f"{target}'s docstring must say 'notebook {name[:2]}'"


LOCAL_PATHS = ("/work/", "/home/", "/tmp/", "/root/", "site-packages", ".venv", "C:\\Users")
MAX_STREAM_LINES = 40


def _stream_text(output: dict) -> str:
    text = "".join(output.get("text", []))
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))  # what a reader sees of a \r bar


@pytest.mark.parametrize("name", EXPECTED)
def test_stored_outputs_are_clean(name):
    """Stored outputs carry no local paths, no warnings and no long progress streams (a reader's view)."""
    for c in _cells(name):
        for out in c.get("outputs", []):
            text = _stream_text(out) if out.get("output_type") == "stream" else \
                "".join(out.get("data", {}).get("text/plain", []))
            assert not any(p in text for p in LOCAL_PATHS), f"{name}: a local path in a stored output: {text[:200]}"
            assert "Warning" not in text, f"{name}: a warning in a stored output: {text[:200]}"
            if out.get("output_type") == "stream":
                assert text.count("\n") <= MAX_STREAM_LINES, f"{name}: a {text.count(chr(10))}-line output stream"
            assert out.get("output_type") != "error", f"{name}: a stored error"


@pytest.mark.parametrize("name", EXPECTED)
def test_every_library_file_the_prose_names_exists(name):
    root = NB_DIR.parent
    for c in _cells(name):
        for path in re.findall(r"simclr_lib/[\w/]+\.py", c["text"]):
            assert (root / path).is_file(), f"{name} names {path}, which does not exist"
