#!/bin/sh
# Every scale-out benchmark, one after the other: they share the machine's cores, so never two
# at once. Each prints its own same-run baseline and Markdown rows for BENCHMARKS.md.
#
# Usage: bench/scaleout.sh            (or: make bench)
# Sizes (environment): CITY_ACCOUNTS (burst, default 274000), DAY_HOUSEHOLDS (day, default
# 274000), LATENCY_RATE (readings/s, default 2000), LATENCY_SECONDS (default 10),
# LIVE_READINGS (readings the live runs publish, default all 1,104,783), DAY_PROCESSES
# (processes of the day's replay, default 1).
# The output also goes to bench/data/scaleout-<UTC date and time>.log (ignored by git).
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CITY_ACCOUNTS=${CITY_ACCOUNTS:-274000}
DAY_HOUSEHOLDS=${DAY_HOUSEHOLDS:-274000}
LATENCY_RATE=${LATENCY_RATE:-2000}
LATENCY_SECONDS=${LATENCY_SECONDS:-10}
mkdir -p bench/data
LOG=bench/data/scaleout-$(date -u +%Y%m%dT%H%M%SZ).log

FAILED=$(mktemp)
trap 'rm -f "$FAILED"' EXIT

# One benchmark; a failure is reported and the next one still runs.
run() {
	echo
	echo "== $(date -u +%H:%M:%SZ) $PY $*"
	"$PY" "$@" || { echo "FAILED: $*"; echo "$*" >>"$FAILED"; }
}

{
	echo "commit $(git rev-parse --short HEAD); $(uname -m), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
	# Replay throughput (400 households × 30 days): 1 process with 1 and 2 worker threads,
	# and a 2-process cluster.
	run bench/replay.py --runs 1/1,1/2,2/1
	# Live: 1 process, then a 2-process cluster; throughput and reading -> low_balance latency.
	LIVE="--rate $LATENCY_RATE --latency-seconds $LATENCY_SECONDS ${LIVE_READINGS:+--readings $LIVE_READINGS}"
	run bench/live.py $LIVE
	run bench/live.py --processes 2 $LIVE
	# City: a quarter-hour burst (and RSS per account), then a whole day replayed.
	run bench/city.py burst --accounts "$CITY_ACCOUNTS"
	run bench/city.py day --households "$DAY_HOUSEHOLDS" --processes "${DAY_PROCESSES:-1}"
} 2>&1 | tee "$LOG"
if [ -s "$FAILED" ]; then
	echo "failed:" && cat "$FAILED"
	exit 1
fi
