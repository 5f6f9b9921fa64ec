#!/usr/bin/env bash
# The time-driven quickstart while another process keeps one core busy for its first BUSY_S seconds (issue 19,
# item 2): does the planner give the time back once the core frees? Prints the load every 15 s to LOAD_LOG.
#   bash benchmarks/quickstart_busy_core.sh [SEED] [BUSY_S]      (results: docs/results.md, "With a busy core")
set -euo pipefail
seed="${1:-0}" busy_s="${2:-120}"
out="runs/qs_busy_s${seed}" load_log="${LOAD_LOG:-runs/qs_busy_s${seed}.load}"
mkdir -p runs
echo "start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
python -c "import time; t = time.time()
while time.time() - t < $busy_s: pass" &
busy=$!
(while true; do echo "$(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 15; done) > "$load_log" 2>&1 &
logger=$!
trap 'kill $logger $busy 2>/dev/null || true' EXIT
/usr/bin/time -f "wall %e s" python -m simclr_lib quickstart --seed "$seed" --out "$out" --overwrite --device cpu
echo "end $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
