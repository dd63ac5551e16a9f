#!/usr/bin/env bash
# bench/failover/run.sh — how long the shards of a stopped worker go unread: two workers
# share a 4-shard stream (2 leases each), one is stopped, and the clock runs until the
# other has started processing all four shards.
#
#   bench/failover/run.sh [LEASE_DURATION]     (default 10s, the product's default)
#
# Rows: `kill9` (the worker dies: its leases must expire first, then the survivor's next
# taking round takes them) and `sigterm` (graceful: the worker checkpoints and releases its
# leases, the survivor takes them on its next taking round). Each is run ROUNDS times
# (default 3). Times are measured from the signal to the survivor's "processing shard" log
# line, polled every 50 ms. Renew and take intervals are the product's defaults (a third and
# half of the lease duration). Needs `dev/stack up` (ferrokinesis :4569, the DynamoDB server :8000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
LEASE=${1:-10s}
ROUNDS=${ROUNDS:-3}
source bench/lib.sh
build_release
eval "$(dev/stack env)"
guest=${SHARDLINE_GUESTS_OUT:-$PWD/target/guests}/passthrough.wasm
[[ -f $guest ]] || { echo "no $guest: run guest-examples/build.sh" >&2; exit 1; }
work=$(mktemp -d /tmp/shardline-bench-fo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

id=$RANDOM$RANDOM
stream=bench-fo-$id
cat >"$work/w.yaml" <<YAML
application: bench-fo-$id
source:
  stream: $stream
  initial_position: trim_horizon
leases:
  duration: $LEASE
aws:
  region: us-east-1
  credentials: {type: static, access_key_id: test, secret_access_key: test}
  endpoints: {kinesis: "$SHARDLINE_FERROKINESIS_ENDPOINT", dynamodb: "$SHARDLINE_DYNAMODB_ENDPOINT"}
stages:
  pipeline:
    component: $guest
sinks:
  pulsar:
    pulsar: {service_url: "$SHARDLINE_PULSAR_URL", topic: "persistent://public/default/$stream"}
YAML
"$bin" produce --config "$work/w.yaml" --endpoint "$SHARDLINE_FERROKINESIS_ENDPOINT" \
  --stream "$stream" --create-shards 4 --sample random --count 0 --progress 0s >"$work/produce.log" 2>&1 ||
  { cat "$work/produce.log" >&2; exit 1; }

n=0
start_worker() { # sets $wpid, $wlog
  n=$((n + 1))
  wlog=$work/worker-$n.log
  SHARDLINE_LOG=info "$bin" run --config "$work/w.yaml" 2>"$wlog" &
  wpid=$!
  pids+=("$wpid")
}

processing() { grep -c "processing shard" "$1" || true; }
holding() { # log: leases held now = taken - lost/released (approximated by log lines)
  local taken lost
  taken=$(processing "$1")
  lost=$(grep -cE "lease taken by another worker|released lease|lease lost" "$1" || true)
  echo $((taken - lost))
}

# Conditions, evaluated afresh on each poll.
at_least() { (($("$1" "$2") >= $3)); } # counter log n
at_most() { (($("$1" "$2") <= $3)); }  # counter log n

wait_for() { # seconds command...
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || { echo "timed out: $*" >&2; tail -5 "$work"/worker-*.log >&2; exit 1; }
    sleep 0.05
  done
}

# The survivor: started first, so it holds all four shards before the other arrives.
start_worker
survivor=$wpid survivor_log=$wlog
wait_for 60 at_least processing "$survivor_log" 4

for mode in kill9 sigterm; do
  for round in $(seq "$ROUNDS"); do
    # The victim takes two of the four leases (stealing, one per taking round).
    start_worker
    victim=$wpid victim_log=$wlog
    wait_for 120 at_least processing "$victim_log" 2
    wait_for 120 at_most holding "$survivor_log" 2
    before=$(processing "$survivor_log")
    t0=$(date +%s.%N)
    if [[ $mode == kill9 ]]; then kill -9 "$victim"; else kill -TERM "$victim"; fi
    wait_for 120 at_least processing "$survivor_log" $((before + 2))
    t1=$(date +%s.%N)
    wait "$victim" 2>/dev/null || true
    printf 'failover  mode=%s round=%d lease_duration=%s seconds=%.2f\n' "$mode" "$round" "$LEASE" \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
  done
done
kill -TERM "$survivor"
wait "$survivor" 2>/dev/null || true
