"""Plain ``pytest`` runs the notebooks (and every test) at the seconds-long smoke scale.

Loaded by pytest before anything is collected, so nbval's notebook kernels, which inherit this process's
environment, see ``SIMCLR_SMOKE=1`` too. An explicit choice wins: set ``SIMCLR_MODE=quick`` (or ``SIMCLR_SMOKE=0``)
to run the notebooks at the CPU "quick" scale.
"""
from __future__ import annotations

import os
import tempfile
from typing import MutableMapping

import pytest

SCALE_VARIABLES = ("SIMCLR_SMOKE", "SIMCLR_MODE")
ENV_BEFORE = {k: os.environ.get(k) for k in SCALE_VARIABLES}  # as pytest was started (tests check it)


def default_to_smoke(environ: MutableMapping[str, str]) -> None:
    """Set ``SIMCLR_SMOKE=1`` in ``environ`` unless SIMCLR_SMOKE or SIMCLR_MODE is already set (even to '')."""
    if not any(k in environ for k in SCALE_VARIABLES):
        environ["SIMCLR_SMOKE"] = "1"


default_to_smoke(os.environ)

# The generated student editions (python tools/student.py) have no stored outputs and stub exercises, so nbval
# would fail them; tests/test_student.py checks them instead. Paths are relative to this file; a path named on the
# command line is still collected.
collect_ignore_glob = ["notebooks/student/*"]


RUNS_DIR_GIVEN = "SIMCLR_RUNS_DIR" in os.environ  # as pytest was started: an explicit choice wins


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every notebook nbval runs starts from an empty runs folder of its own (``SIMCLR_RUNS_DIR``, read by
    ``teaching.notebook.setup``), set before its kernel starts: each notebook must run alone, in any order, as on
    a fresh Colab machine. An explicit ``SIMCLR_RUNS_DIR`` wins."""
    notebook = item.parent
    if not str(getattr(notebook, "path", "")).endswith(".ipynb") or getattr(notebook, "_simclr_runs", None):
        return
    if not RUNS_DIR_GIVEN:
        notebook._simclr_runs = tempfile.mkdtemp(prefix="simclr-runs-")
        os.environ["SIMCLR_RUNS_DIR"] = notebook._simclr_runs
