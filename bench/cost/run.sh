#!/usr/bin/env bash
# bench/cost/run.sh — the cost curve: how Shardline's CPU per record and memory grow with
# the number of shards (1, 8, 32) and with the record size (100 B, 1 KiB, 10 KiB), on the
# pass-through of bench/passthrough/run.sh (Shardline only, no KCL run).
#
#   bench/cost/run.sh [RECORDS]     (default 300,000 per point; 10 KiB points use a tenth)
#
# One `catch-up` line per point, as bench/passthrough/run.sh prints them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N=${1:-300000}
export SHARDLINE_BENCH_KCL=0
for shards in 1 8 32; do
  bench/passthrough/run.sh "$N" "$shards" 100 | grep -E '^(idle|catch-up)'
done
for size in 1024 10240; do
  n=$N
  ((size < 10240)) || n=$((N / 10))
  bench/passthrough/run.sh "$n" 8 "$size" | grep -E '^catch-up'
done
