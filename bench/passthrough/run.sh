#!/usr/bin/env bash
# bench/passthrough/run.sh — the consumer's cost: Kinesis (an unlimited ferrokinesis, the
# fast emulator) → `shardline run` with the identity component (tests/guests/passthrough,
# one Wasm call per batch) → Pulsar standalone. Prints one line per phase; copy them into
# BENCHMARKS.md with this command.
#
#   bench/passthrough/run.sh [RECORDS] [SHARDS]     (default 500,000 records, 8 shards)
#
# Phases:
#   idle      a worker holding SHARDS leases of an empty stream, 10 s after it started
#             reading them: resident memory
#   catch-up  RECORDS 100-byte records (10,000 keys, not aggregated) already in the stream,
#             read from TRIM_HORIZON until Pulsar has them all: records/s, CPU seconds per
#             million records and peak memory of shardline, and the CPU the emulator and
#             Pulsar used meanwhile (what limits records/s on this 2-core machine)
# SHARDLINE_BENCH_QUEUE sets source.receive_queue_size (default 10000, the product's).
# Needs `dev/stack up` and the test guests (`guest-examples/build.sh`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N=${1:-500000}
SHARDS=${2:-8}
QUEUE=${SHARDLINE_BENCH_QUEUE:-10000} # source.receive_queue_size
source bench/lib.sh
build_release
eval "$(dev/stack env)"
start_fast_ferrokinesis
guest=${SHARDLINE_GUESTS_OUT:-$PWD/target/guests}/passthrough.wasm
[[ -f $guest ]] || { echo "no $guest: run guest-examples/build.sh" >&2; exit 1; }
work=$(mktemp -d /tmp/shardline-bench-pt.XXXXXX)

config() { # app stream topic
  cat <<YAML
application: $1
source:
  stream: $2
  initial_position: trim_horizon
  receive_queue_size: $QUEUE
aws:
  region: us-east-1
  credentials: {type: static, access_key_id: test, secret_access_key: test}
  endpoints: {kinesis: "$FAST_ENDPOINT", dynamodb: "$SHARDLINE_DYNAMODB_ENDPOINT"}
stages:
  pipeline:
    component: $guest
sinks:
  pulsar:
    pulsar: {service_url: "$SHARDLINE_PULSAR_URL", topic: "$3"}
YAML
}

produce() { # stream count
  "$bin" produce --config "$work/idle.yaml" --endpoint "$FAST_ENDPOINT" --stream "$1" \
    --create-shards "$SHARDS" --sample random --count "$2" --size 100 --keys 10000 \
    --progress 0s --rate-limit 100000 --no-aggregation >/dev/null 2>&1
}

in_pulsar() { # topic name
  curl -sf "$SHARDLINE_PULSAR_ADMIN/admin/v2/persistent/public/default/$1/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("msgInCounter", 0))' 2>/dev/null || echo 0
}

wait_log() { # file text count
  for _ in $(seq 600); do
    (($(grep -c "$2" "$1" || true) >= $3)) && return 0
    sleep 0.1
  done
  echo "timed out waiting for $3 × '$2' in $1" >&2
  return 1
}

id=$RANDOM$RANDOM
# Idle.
config "bench-idle-$id" "bench-idle-$id" "persistent://public/default/bench-idle-$id" >"$work/idle.yaml"
produce "bench-idle-$id" 0
SHARDLINE_LOG=info "$bin" run --config "$work/idle.yaml" 2>"$work/idle.log" &
pid=$!
wait_log "$work/idle.log" "processing shard" "$SHARDS"
sleep 10 # idle is a duration, not a condition
printf 'idle      shards=%d rss_mib=%d\n' "$SHARDS" "$(rss_mib $pid VmRSS)"
kill -TERM $pid && wait $pid || true

# Catch-up.
topic=bench-pt-$id
config "bench-pt-$id" "bench-pt-$id" "persistent://public/default/$topic" >"$work/pt.yaml"
produce "bench-pt-$id" "$N"
ferro=$(pgrep -f "ferrokinesis --port 4567 --create-stream-ms 0 --shard-limit 1000" | head -1)
pulsar=$(pgrep -f PulsarStandaloneStarter | head -1)
ferro0=$(cpu_seconds "$ferro")
pulsar0=$(cpu_seconds "$pulsar")
t0=$(date +%s.%N)
SHARDLINE_LOG=info "$bin" run --config "$work/pt.yaml" 2>"$work/pt.log" &
pid=$!
while (($(in_pulsar "$topic") < N)); do
  kill -0 $pid 2>/dev/null || { tail -20 "$work/pt.log" >&2; exit 1; }
  sleep 0.2
done
t1=$(date +%s.%N)
cpu=$(cpu_seconds $pid)
peak=$(rss_mib $pid VmHWM)
ferro1=$(cpu_seconds "$ferro")
pulsar1=$(cpu_seconds "$pulsar")
kill -TERM $pid && wait $pid || true
python3 - "$N" "$SHARDS" "$t0" "$t1" "$cpu" "$peak" "$ferro0" "$ferro1" "$pulsar0" "$pulsar1" "$QUEUE" <<'PY'
import sys
n, shards = int(sys.argv[1]), int(sys.argv[2])
t0, t1, cpu, peak, f0, f1, p0, p1 = map(float, sys.argv[3:11])
wall = t1 - t0
print(f"catch-up  records={n} shards={shards} queue={int(sys.argv[11])} seconds={wall:.1f} records_per_s={n / wall:.0f} "
      f"shardline_cpu_s_per_million={cpu / n * 1e6:.1f} shardline_cpu_share={cpu / wall:.2f} "
      f"peak_rss_mib={int(peak)} ferrokinesis_cpu_share={(f1 - f0) / wall:.2f} "
      f"pulsar_cpu_share={(p1 - p0) / wall:.2f}")
PY
rm -rf "$work"
