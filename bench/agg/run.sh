#!/usr/bin/env bash
# bench/agg/run.sh — KPL aggregation and de-aggregation throughput, Shardline against AWS's
# aws-kinesis-agg (Python) on the same input: runs the criterion bench host/benches/agg.rs
# (release), then bench/agg/python_agg.py in the dev/setup venv, checks that both wrote
# the same aggregates (count and MD5), and prints a table. Results go in BENCHMARKS.md.
#
#   bench/agg/run.sh [--runs N]     N: Python runs per measurement, median (default 5)
#
# Set CARGO_TARGET_DIR to keep the release build apart from a debug target folder.
# SHARDLINE_AGG_BENCH_BIN=<a saved copy of target/release/deps/agg-*> runs that bench
# binary instead of building one (before/after comparisons; rows an older binary does not
# have are left out).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

runs=5
if [[ ${1:-} == --runs ]]; then runs=${2:?--runs needs a number}; fi

pyenv=${SHARDLINE_PYENV:-${HOME:?HOME must be set}/.cache/shardline/pyenv}
python=$pyenv/bin/python
[[ -x $python ]] || { echo "no Python environment at $pyenv: run dev/setup" >&2; exit 1; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
# No estimates left from an earlier run (of another binary) to be read as this one's.
rm -rf "$target_dir/criterion/agg"
if [[ -n ${SHARDLINE_AGG_BENCH_BIN:-} ]]; then
  echo "==> Shardline: $SHARDLINE_AGG_BENCH_BIN --bench" >&2
  CRITERION_HOME=$target_dir/criterion "$SHARDLINE_AGG_BENCH_BIN" --bench --noplot |
    tee "$out/rust.log" >&2
else
  echo "==> Shardline: cargo bench -p shardline --bench agg" >&2
  cargo bench -p shardline --bench agg --locked -- --noplot | tee "$out/rust.log" >&2
fi

echo "==> aws-kinesis-agg: bench/agg/python_agg.py --runs $runs" >&2
"$python" bench/agg/python_agg.py --runs "$runs" | tee "$out/python.jsonl" >&2

python3 - "$out/rust.log" "$out/python.jsonl" "$target_dir/criterion/agg" "$load_start" <<'PY'
import json, sys
rust_log, python_log, criterion, load_start = sys.argv[1:]
load_end = " ".join(open("/proc/loadavg").read().split()[:3])

rust_checks = {}
for line in open(rust_log):
    if line.startswith("agg-check "):
        _, name, count, md5 = line.split()
        rust_checks[name] = [int(count), md5]

python_checks, python_results = {}, {}
for line in open(python_log):
    item = json.loads(line)
    if "check" in item:
        name, count, md5 = item["check"]
        python_checks[name] = [count, md5]
    else:
        op, name, n, payload, seconds, _wall = item["result"]
        python_results[(op, name)] = (n, payload, seconds)

if rust_checks != python_checks:
    sys.exit(f"the two wrote different aggregates: {rust_checks} vs {python_checks}")

def rust_seconds(op, name):
    try:
        with open(f"{criterion}/{op}/{name}/new/estimates.json") as f:
            return json.load(f)["median"]["point_estimate"] / 1e9
    except FileNotFoundError:
        return None  # a bench binary without this case

def rate(n, payload, seconds):
    return f"{n / seconds / 1e6:,.2f} M/s | {payload / seconds / 1e6:,.0f} MB/s"

LABELS = {
    "aggregate": ("aggregate", "aggregate"),
    "aggregate-batch": ("aggregate", "aggregate, digests per PutRecords request"),
    "aggregate-batch-reuse": ("aggregate", "the same, written into reused buffers"),
    "aggregate-in-place": ("aggregate", "digests per request, records written once (in place)"),
    "aggregate-in-place-reuse": ("aggregate", "the same, into reused buffers"),
    "deaggregate": ("deaggregate", "deaggregate (borrowed)"),
    "deaggregate-batch": ("deaggregate", "deaggregate, per 2 MiB GetRecords batch (borrowed)"),
    "deaggregate-owned": ("deaggregate", "deaggregate (owned copies)"),
}
print()
print("Same aggregates written by both (count, MD5): "
      + ", ".join(f"{k}: {v[0]} aggregates" for k, v in rust_checks.items()))
print()
print("| input | operation | Shardline records/s | MB/s | aws-kinesis-agg 1.2.3 records/s "
      "| MB/s | Shardline / aws-kinesis-agg |")
print("|---|---|---:|---:|---:|---:|---:|")
for name in rust_checks:
    for rust_op, (py_op, label) in LABELS.items():
        seconds = rust_seconds(rust_op, name)
        if seconds is None:
            continue
        n, payload, py_seconds = python_results[(py_op, name)]
        print(f"| {name} | {label} | {rate(n, payload, seconds)} | "
              f"{rate(n, payload, py_seconds)} | {py_seconds / seconds:,.1f}× |")
    n, payload, py_agg = python_results[("aggregate", name)]
    _, _, py_deagg = python_results[("deaggregate", name)]
    for op, label in [("md5-only", "MD5 of the aggregates only, one at a time"),
                      ("md5-batch", "MD5 of the aggregates only, per 2 MiB batch")]:
        md5 = rust_seconds(op, name)
        if md5 is None:
            continue
        print(f"| {name} | {label} | {rate(n, payload, md5)} | "
              f"| | aggregate ≤ {py_agg / md5:,.1f}×, deaggregate ≤ {py_deagg / md5:,.1f}× |")
print()
print("Per CPU second of the one thread doing the work. MB/s counts user-record data only")
print("(not keys or framing). Shardline: criterion median; aws-kinesis-agg: median of the")
print(f"Python runs. Load average (1, 5, 15 min): {load_start} at the start, {load_end} at the end.")
PY
