#!/usr/bin/env bash
# Make, on this CPU machine, what the GPU calls of tools/gpu/full_scale.py carry (docs/gpu.md); check the sizes:
#   .gpu_data/cifar10_jpeg.npz  CIFAR-10's JPEG bytes, deflated (tools/gpu/carry.py pack), ~18 MB; made once
#   .gpu_data/git_commit.json   the commit the calls run (the device gets no .git), rewritten every time
#   .whl/  nbclient + ipykernel and dependencies for CPython 3.12 / manylinux x86-64, less what the GPU image has
#          (its list: /work/.library/device/KINDS.md) and debugpy, jedi, parso (imported only when present); once
#   .gpu_state/                 what tools/gpu/carry.py collect keeps between calls
# All are git-ignored through .git/info/exclude. A call carries at most 64 MiB, the working tree included.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
for p in /.whl/ /.gpu_data/ /.gpu_state/; do
  grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
done
mkdir -p .gpu_data .gpu_state
[ -f .gpu_data/cifar10_jpeg.npz ] || ${PYTHON:-python} tools/gpu/carry.py pack > .gpu_data/pack.json
if [ -z "$(ls .whl/*.whl 2>/dev/null)" ]; then
  TOP="nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0 jupyter_client==8.10.0 jupyter_core==5.9.1"
  SKIP=" attrs packaging psutil pygments python_dateutil six typing_extensions tzdata debugpy jedi parso "
  # shellcheck disable=SC2046,SC2086
  python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp -d .whl $TOP \
    $(printf -- "--platform manylinux%s_x86_64 " _2_28 _2_27 _2_26 _2_17 2014 _2_5 1)
  for w in .whl/*.whl; do
    name=$(basename "$w" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
    [[ "$SKIP" != *" $name "* ]] || { echo "left out: $(basename "$w")"; rm "$w"; }
  done
fi
dirty=false; [ -z "$(git status --porcelain --untracked-files=no)" ] || dirty=true
echo "{\"git_commit\": \"$(git rev-parse HEAD)\", \"git_dirty\": $dirty}" > .gpu_data/git_commit.json
echo "commit $(git rev-parse HEAD)$($dirty && echo ' (tracked files modified: commit first)')"
total=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "working tree: $((total / 1048576)) MiB"
for d in .gpu_data .whl .gpu_state; do
  n=$(du -sb "$d" | cut -f1); total=$((total + n)); echo "$d: $((n / 1048576)) MiB"
done
echo "all carried: $((total / 1048576)) MiB of 64 MiB"
[ "$total" -le $((64 * 1048576)) ] || { echo "over the 64 MiB a call carries" >&2; exit 1; }
