#!/usr/bin/env bash
# Wheels that let the GPU machine (Python 3.12, x86-64, no package registry) execute notebooks with nbclient.
#
#   bash benchmarks/gpu/prepare_wheels.sh            # -> .whl/*.whl (git-ignored through .git/info/exclude)
#   bash benchmarks/gpu/prepare_wheels.sh --check    # also run a notebook with them in a bare Python 3.11 venv
#
# pip resolves the full dependency tree of nbclient + ipykernel for CPython 3.12 on manylinux x86-64 (the device
# README's platform tags); then the script drops (1) what the GPU image already holds (its package list in
# /work/.library/device/KINDS.md) and (2) debugpy, jedi and parso, which ipykernel and IPython import only when
# present (the debugger and tab completion: a notebook run needs neither), about 11 MB of the 17 MB.
# On the GPU machine:  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#                        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
PY=${PYTHON:-python3}
TOP="nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0 jupyter_client==8.10.0 jupyter_core==5.9.1"
# on the GPU image already (KINDS.md), or imported only when present:
SKIP="attrs packaging psutil pygments python_dateutil six typing_extensions tzdata debugpy jedi parso"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64
 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64
 --platform manylinux1_x86_64"

grep -qxF /.whl/ .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086
$PY -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS -d "$tmp/all" $TOP
rm -rf .whl && mkdir -p .whl
for w in "$tmp"/all/*.whl; do
  name=$(basename "$w" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
  if [[ " $SKIP " == *" $name "* ]]; then echo "left out: $(basename "$w")"; else cp "$w" .whl/; fi
done
dups=$(ls .whl | cut -d- -f1 | sort | uniq -d)
[ -z "$dups" ] || { echo "two versions of: $dups" >&2; exit 1; }
echo "$(ls .whl | wc -l) wheels in .whl/, $(du -cb .whl/*.whl | tail -1 | cut -f1) bytes"

if [ "${1:-}" = "--check" ]; then
  # the same tree for this machine's Python, installed the device's way into a venv that has only what the GPU
  # image has of it; then nbclient runs a two-cell notebook there
  ver=$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  $PY -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install -q attrs packaging psutil pygments python-dateutil typing_extensions
  # shellcheck disable=SC2086
  $PY -m pip download -q --only-binary=:all: --python-version "$ver" -d "$tmp/here" $TOP
  for w in "$tmp"/here/*.whl; do
    name=$(basename "$w" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
    [[ " $SKIP " == *" $name "* ]] || { mkdir -p "$tmp/keep"; cp "$w" "$tmp/keep/"; }
  done
  "$tmp/venv/bin/python" -m pip install -q --no-index --no-deps --no-compile --target "$tmp/site" "$tmp"/keep/*.whl
  PYTHONPATH="$tmp/site" "$tmp/venv/bin/python" - <<'EOF'
import nbformat
from nbclient import NotebookClient
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.version_info[:2])"),
                                     nbformat.v4.new_code_cell("%matplotlib --list")])
NotebookClient(nb, timeout=60, kernel_name="python3").execute()
print("check: nbclient ran a notebook with only the carried wheels:", nb.cells[0].outputs[0]["text"].strip())
EOF
fi
