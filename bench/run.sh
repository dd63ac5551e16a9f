#!/usr/bin/env bash
# bench/run.sh — every benchmark of BENCHMARKS.md, in one run (the entry script).
#
#   bench/run.sh                 all of them, in the order below (~40 min on 2 cores,
#                                after a release build: ~13 min cold)
#   bench/run.sh NAME...         only those, e.g. `bench/run.sh passthrough failover`
#   bench/run.sh --list          the names
#
# Names (each is a script or a `cargo bench` target; BENCHMARKS.md has their figures):
#   wasm         host/benches/wasm_path.rs: guests against the same logic native
#   agg          bench/agg/run.sh: KPL aggregation against PyPI aws-kinesis-agg
#   passthrough  bench/passthrough/run.sh: Kinesis → identity stage → Pulsar, against the
#                AWS KCL for Java on the same data
#   produce      bench/produce/run.sh --vs-kpl: `shardline produce` against the AWS KPL
#   cost         bench/cost/run.sh: CPU and memory by shard count and record size
#   latency      host/benches/latency.rs: put → Pulsar, polling against fan-out
#   failover     bench/failover/run.sh: kill -9 and SIGTERM of a worker
#
# Needs the stack (`dev/stack up`), the guests (`guest-examples/build.sh`) and, for agg,
# `dev/setup`. Output goes to stdout and to bench/results/<date>-<name>.txt (not committed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source bench/lib.sh

all=(wasm agg passthrough produce cost latency failover)
if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${all[@]}"
  exit 0
fi
names=("$@")
((${#names[@]})) || names=("${all[@]}")
for n in "${names[@]}"; do
  [[ " ${all[*]} " == *" $n "* ]] || { echo "unknown benchmark $n (one of: ${all[*]})" >&2; exit 2; }
done

run_one() {
  case $1 in
    wasm) cargo bench --locked -p shardline --bench wasm_path ;;
    agg) bench/agg/run.sh ;;
    passthrough) bench/passthrough/run.sh 500000 8 ;;
    produce) bench/produce/run.sh --vs-kpl ;;
    cost) bench/cost/run.sh ;;
    latency) cargo bench --locked -p shardline --bench latency ;;
    failover) bench/failover/run.sh ;;
  esac
}

guest-examples/build.sh >/dev/null
build_release
mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
failed=()
for n in "${names[@]}"; do
  out=bench/results/$stamp-$n.txt
  echo "== $n ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)) → $out"
  if ! run_one "$n" 2>&1 | tee "$out"; then
    failed+=("$n")
  fi
done
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
