"""The package's layout (issue 18): the paper on top, the run machinery, command line and teaching aids in named
sub-packages, no import cycle (type-only imports included), and one definition per public name."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "simclr_lib"
# The top of the package is the paper, in the order of Algorithm 1 and the notebooks, plus the device/precision
# (runtime) and torchrun (distributed) helpers beside it.
PAPER = ("config", "augment", "augment_ops", "models", "loss", "optim", "train", "evaluate", "embed")
BESIDE = ("runtime", "distributed", "__init__", "__main__")
SUBPACKAGES = ("data", "runs", "cli", "teaching")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.AST, here: str, is_package: bool) -> list[str]:
    """simclr_lib modules an import statement loads (``from a import b`` loads ``a.b`` when that is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("simclr_lib")]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative import
        pkg = here.split(".") if is_package else here.split(".")[:-1]
        pkg = pkg[:len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([base] if base else []))
    if not base.startswith("simclr_lib"):
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the simclr_lib modules it imports anywhere (top level, functions, ``if TYPE_CHECKING``).

    The top-level ``simclr_lib/__init__`` (the public facade: ``SimCLRConfig``, ``pretrained``) is left out as a
    target: every sub-module import runs it, which says nothing about the layers.
    """
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        targets = set()
        for node in ast.walk(tree):
            targets.update(t for t in _imported(node, name, path.name == "__init__.py") if t in MODULES)
        graph[name] = targets - {name, "simclr_lib"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles (type-only imports count): {found}"


def test_the_top_of_the_package_is_the_paper():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert sorted(top) == sorted(PAPER + BESIDE), f"modules at the top of simclr_lib: {top}"
    subs = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert subs == sorted(SUBPACKAGES)


def test_the_paper_never_imports_the_teaching_aids_or_the_command_line():
    graph = import_graph()
    for name in PAPER:
        below = [t for t in graph[f"simclr_lib.{name}"] if t.startswith(("simclr_lib.teaching", "simclr_lib.cli"))]
        assert not below, f"simclr_lib.{name} imports {below}"
    for name, targets in graph.items():
        if name.startswith(("simclr_lib.runs", "simclr_lib.data")):
            assert not [t for t in targets if t.startswith(("simclr_lib.teaching", "simclr_lib.cli"))], name


def public_definitions() -> dict[str, list[str]]:
    """Public name -> modules that define it (def, class, or a top-level UPPER_CASE constant)."""
    where: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
            for n in names:
                if not n.startswith("_") and n != "main":
                    where.setdefault(n, []).append(name)
    return where


def test_no_public_name_is_defined_twice():
    twice = {n: m for n, m in public_definitions().items() if len(m) > 1}
    assert not twice, f"public names defined in more than one module: {twice}"


@pytest.mark.parametrize("name", [f"simclr_lib.{m}" for m in PAPER if m != "augment_ops"])
def test_every_public_function_of_the_paper_says_where_it_is_taught(name):
    tree = ast.parse(MODULES[name].read_text())
    missing = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
               and not n.name.startswith("_") and "Taught in notebook" not in (ast.get_docstring(n) or "")]
    assert not missing, f"{name}: add 'Taught in notebook NN' to the docstrings of {missing}"
