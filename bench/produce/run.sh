#!/usr/bin/env bash
# bench/produce/run.sh — throughput and peak memory of `shardline produce` (the KPL-grade
# producer) into the local emulators. Prints one line per scenario; copy them into
# BENCHMARKS.md with this command.
#
#   bench/produce/run.sh [RECORDS]     (default 1,000,000; kinesis-local gets a tenth)
#
# Scenarios (100-byte random records, 10,000 distinct partition keys):
#   ferro-limits   ferrokinesis --enforce-limits (dev/stack), 16 shards, default producer:
#                  bounded by the shards' 1 MiB/s, as on AWS
#   ferro-fast     a second ferrokinesis without limits (started here, loopback only),
#                  16 shards, rate limit raised to 100,000 %: what the producer itself does
#   ferro-plain    as ferro-fast, aggregation off
#   kinesis-local  kinesis-local (dev/stack), 4 shards, default producer
# Needs `dev/stack up kinesis ferrokinesis`. Release build in $CARGO_TARGET_DIR (see
# bench/lib.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N=${1:-1000000}
source bench/lib.sh
build_release
eval "$(dev/stack env)"
start_fast_ferrokinesis

cfg=$(mktemp /tmp/shardline-bench-XXXXXX.yaml)
cat >"$cfg" <<YAML
application: bench
source:
  stream: unused
aws:
  region: us-east-1
  credentials: {type: static, access_key_id: test, secret_access_key: test}
sinks:
  pulsar:
    pulsar: {service_url: pulsar://127.0.0.1:6650, topic: unused}
YAML

run() { # name endpoint shards records extra-args...
  local name=$1 endpoint=$2 shards=$3 n=$4; shift 4
  local stream out rss
  stream=bench-$name-$RANDOM$RANDOM
  out=$(/usr/bin/time -f 'peak_rss_kib=%M' "$bin" produce --config "$cfg" --endpoint "$endpoint" \
    --stream "$stream" --create-shards "$shards" --sample random --count "$n" --size 100 \
    --keys 10000 --progress 0s "$@" 2>&1) || { echo "$out" >&2; exit 1; }
  rss=$(grep -o 'peak_rss_kib=[0-9]*' <<<"$out" | cut -d= -f2)
  printf '%-14s %s peak_rss_mib=%d\n' "$name" "$(grep '^produce:' <<<"$out" | sed 's/^produce: //')" $((rss / 1024))
}

run ferro-limits "$SHARDLINE_FERROKINESIS_ENDPOINT" 16 "$N"
run ferro-fast "$FAST_ENDPOINT" 16 "$N" --rate-limit 100000
run ferro-plain "$FAST_ENDPOINT" 16 "$N" --rate-limit 100000 --no-aggregation
run kinesis-local "$SHARDLINE_KINESIS_ENDPOINT" 4 $((N / 10))
