"""Colab, exercised (issue 20, item 10): each notebook's install cell run as Colab runs it.

A fake ``google.colab`` module, a fresh virtual environment (it sees this environment's torch & co., as Colab's
image has them preinstalled, but not this checkout), ``REPO_URL`` pointed at a local clone of this repository tagged
with the release ``v{__version__}``: the install cell must install ``simclr_lib`` from that tag, and the
notebook's first cells must then run in smoke mode on the installed copy, not on this checkout. pip fetches only
the build backend (setuptools) from the package index; every dependency is already there.
"""
import json
import os
import re
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

from simclr_lib import __version__
from simclr_lib.teaching.notebook import REPO_URL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))


def _code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """(python of a fresh venv, the local clone's file:// URL, a folder holding the fake google.colab)."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to clone the repository")
    tmp = tmp_path_factory.mktemp("colab")
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    tags = subprocess.run(["git", "-C", str(clone), "tag"], capture_output=True, text=True, check=True).stdout
    if f"v{__version__}" not in tags.split():  # the release tag the install cells pin (docs/release.md)
        subprocess.run(["git", "-C", str(clone), "tag", f"v{__version__}"], check=True)
    venv.create(tmp / "venv", with_pip=True)
    site = subprocess.run([str(tmp / "venv" / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # Colab's image has torch, torchvision, matplotlib, scikit-learn preinstalled: this environment's packages
    # stand in for them (a path line, so this checkout's own editable-install hook is not loaded)
    Path(site, "colab_image.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    fake = tmp / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    # no google/__init__.py: a namespace package, so the real google.protobuf (tensorboard's) still imports
    (fake / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab\'s module."""\n')
    return tmp / "venv" / "bin" / "python", f"file://{clone}", fake


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_install_cell_installs_the_release_and_the_notebook_starts(colab, path, tmp_path):
    python, url, fake = colab
    cells = _code_cells(path)
    install = next(c for c in cells if "google.colab" in c)
    assert f'REPO_URL = "{REPO_URL}"' in install and f'VERSION = "{__version__}"' in install
    first = [install.replace(f'REPO_URL = "{REPO_URL}"', f'REPO_URL = "{url}"')]
    first += [c for c in cells[cells.index(install) + 1:cells.index(install) + 3]]  # parameters, set-up
    script = "\n\n".join("\n".join(line for line in c.splitlines() if not line.lstrip().startswith(("%", "!")))
                         for c in first)
    script = "import google.colab, sys\nsys.path = [p for p in sys.path if p not in ('', '.')]\n" + script
    script += "\nimport simclr_lib\nprint('installed at', simclr_lib.__file__, simclr_lib.__version__)\n"
    env = dict(os.environ, PYTHONPATH=str(fake), SIMCLR_SMOKE="1", MPLBACKEND="Agg",
               SIMCLR_RUNS_DIR=str(tmp_path / "runs"))
    env.pop("SIMCLR_MODE", None)
    out = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    where = re.search(r"installed at (\S+) (\S+)", out.stdout)
    assert where and where.group(2) == __version__, out.stdout[-2000:]
    assert str(ROOT) not in where.group(1) and "site-packages" in where.group(1), where.group(1)
