#!/usr/bin/env bash
# Make, on this CPU machine, everything the GPU calls of benchmarks/full_scale.py carry, and check the sizes.
#
#   bash benchmarks/gpu/prepare.sh        # idempotent: the pack and the wheels are made once
#
# .gpu_data/cifar10_jpeg.npz  CIFAR-10 as deflated JPEG bytes (benchmarks/gpu/pack_data.py), ~18 MB
# .gpu_data/git_commit.json   the commit the calls run (the device gets no .git), rewritten on every run
# .whl/                       nbclient + ipykernel and their dependencies (benchmarks/gpu/prepare_wheels.sh)
# .gpu_state/                 what collect.py keeps between calls (made by it; created empty here)
# All three are git-ignored through .git/info/exclude. A call carries at most 64 MiB with the working tree.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
PY=${PYTHON:-python}
for p in /.whl/ /.gpu_data/ /.gpu_state/; do
  grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
done
mkdir -p .gpu_data .gpu_state
if [ ! -f .gpu_data/cifar10_jpeg.npz ]; then
  $PY benchmarks/gpu/pack_data.py --out .gpu_data/cifar10_jpeg.npz > .gpu_data/pack.json
fi
[ -n "$(ls .whl/*.whl 2>/dev/null)" ] || bash benchmarks/gpu/prepare_wheels.sh
$PY - <<'EOF'
import json, subprocess
sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                            text=True).stdout.strip())
json.dump(dict(git_commit=sha, git_dirty=dirty), open(".gpu_data/git_commit.json", "w"))
print(f"commit {sha}{' (tracked files modified: commit first)' if dirty else ''}")
EOF
$PY - <<'EOF'
import os, subprocess
files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                       check=True).stdout.decode().split("\0")
tree = sum(os.path.getsize(f) for f in files if f and os.path.isfile(f))
def size(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
parts = {"working tree": tree, ".gpu_data": size(".gpu_data"), ".whl": size(".whl"), ".gpu_state": size(".gpu_state")}
for k, v in parts.items():
    print(f"{k:>13}: {v / 2**20:6.1f} MiB")
total = sum(parts.values())
print(f"{'all carried':>13}: {total / 2**20:6.1f} MiB of 64 MiB")
if total > 64 * 2**20:
    raise SystemExit("over the 64 MiB a device call carries: leave .whl out of calls that run no notebook")
EOF
