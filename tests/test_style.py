"""The package's size rules (DEVELOPERS.md, issue 9): modules of at most ~400 lines, functions of at most 60
(docstring included), no test-only code path in the package."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "simclr_lib"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_function_sizes(path):
    src = path.read_text()
    assert src.count("\n") <= MAX_MODULE_LINES, f"{path.name} has {src.count(chr(10))} lines; split it"
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            assert n <= MAX_FUNCTION_LINES, f"{path.name}: {node.name} is {n} lines; split it"


def test_no_removed_alternate_paths_come_back():
    """Deleted in the redesign: the per-image training backend, a second normalisation path, test-only helpers."""
    text = "\n".join(p.read_text() for p in MODULES)
    for gone in ("augment_backend=", "def extract_features", "def normalization(", "from_cache",
                 "nt_xent_of_identical_views", "SeedGatherLayer", "def evaluate_encoder", "def adjust_brightness"):
        assert gone not in text, f"{gone!r} is back in simclr_lib"
