#!/usr/bin/env bash
# deploy/test-image.sh — the image on the local stack, with podman (`dev/stack up` first, and
# `eval "$(dev/stack env)"`). Builds the image unless SHARDLINE_IMAGE names one that exists
# (deploy/build-image.sh --fast when it builds). What it proves, in order:
#
#   1. records flow from the Kinesis emulator through a container into Pulsar, every one
#   2. /ready answers 200 from outside the container (measured: start → ready)
#   3. the container runs as user 10001 with a read-only root filesystem and no tmpfs: the
#      compiled-component cache volume is the only place it writes (`podman diff` is empty)
#   4. three containers of one application share the shards (6 shards: 2 each)
#   5. under load, `podman stop` (SIGTERM) drains, checkpoints and releases the leases within the grace
#      period (exit 0, not killed; measured: SIGTERM → leases released), the others take
#      them, and after it nothing was lost or delivered twice
#   6. a rolling upgrade with no duplicates (docs/operations.md): a second application whose
#      config caps leases.max_per_worker at shards / workers; each of three workers is
#      replaced in turn (stopped first, then its successor started) while records are put,
#      and every record reaches Pulsar exactly once
#
# Timings are printed as `measured:` lines. The harness (produce, status, tail) is the same
# binary run on the host: SHARDLINE_BIN, default $CARGO_TARGET_DIR/release/shardline.
# Everything talks over loopback (`--network host`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

: "${SHARDLINE_KINESIS_ENDPOINT:?the local stack: eval \"\$(dev/stack env)\" first}"
: "${SHARDLINE_DYNAMODB_ENDPOINT:?}" "${SHARDLINE_PULSAR_URL:?}"
target=${CARGO_TARGET_DIR:-target}
image=${SHARDLINE_IMAGE:-localhost/shardline:dev}
podman() { deploy/podman.sh "$@"; }
if ! podman image exists "$image"; then
  SHARDLINE_IMAGE=$image deploy/build-image.sh --fast
fi
bin=${SHARDLINE_BIN:-$target/release/shardline}
[[ -x $bin ]] || { echo "test-image.sh: no harness binary at $bin (SHARDLINE_BIN)" >&2; exit 1; }
GRACE=${SHARDLINE_TEST_GRACE:-50}   # the Helm chart's default terminationGracePeriodSeconds

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

id=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
app=img-$id
stream=img-$id
topic=persistent://public/default/img-$id
mkdir -p "$target/image-test/$id/components"
work=$(cd "$target/image-test/$id" && pwd)
names=()
cleanup() {
  for n in "${names[@]}"; do
    podman rm -f -t 0 "$n" >/dev/null 2>&1 || true
    podman volume rm -f "$n-cache" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

# A component, when the guests are built: exercises the compiled-component cache.
guest=${SHARDLINE_GUESTS_OUT:-target/guests}/passthrough.wasm
[[ -f $guest ]] || guest=$target/guests/passthrough.wasm
stages=
if [[ -f $guest ]]; then
  cp "$guest" "$work/components/passthrough.wasm"
  stages="stages:
  pipeline:
    component: /etc/shardline/components/passthrough.wasm"
fi

lease_extra=
config() { # PORT
  cat <<EOC
application: $app
source:
  stream: $stream
  initial_position: trim_horizon
aws:
  region: us-east-1
  credentials:
    type: static
    access_key_id: test
    secret_access_key: test
  endpoints:
    kinesis: $SHARDLINE_KINESIS_ENDPOINT
    dynamodb: $SHARDLINE_DYNAMODB_ENDPOINT
leases:
  duration: 6s
  take_interval: 1s
$lease_extra
checkpoint:
  interval: 1s
metrics:
  listen: 127.0.0.1:$1
sinks:
  pulsar:
    pulsar:
      service_url: $SHARDLINE_PULSAR_URL
      topic: $topic
$stages
EOC
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # NAME PORT: a worker container, read-only, its cache on a volume of its own
  config "$2" >"$work/$1.yaml"
  names+=("$1")
  podman run -d --name "$1" --hostname "$1" --network host \
    --read-only --read-only-tmpfs=false \
    -v "$1-cache:/var/cache/shardline" \
    -v "$work/$1.yaml:/etc/shardline/config.yaml:ro" \
    -v "$work/components:/etc/shardline/components:ro" \
    "$image" >/dev/null
}
wait_ready() { # PORT LIMIT-SECONDS
  local deadline=$(($(date +%s) + $2))
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/ready") == 200 ]]; do
    (($(date +%s) < deadline)) || return 1
    sleep 0.05
  done
}
status() { "$bin" status --config "$work/harness.yaml" 2>/dev/null; }
leases_of() { status | awk -v w="worker $1:" 'index($0, w) == 1 { print $3 }'; }
balance() { status | awk '/^worker .*active leases$/ { print $3 }' | sort -n | tr '\n' ' '; }

config 0 | sed "/^stages:/,\$d" >"$work/harness.yaml"   # the host-side commands load no component
total=0
produce() { # FIRST COUNT: records "rec-FIRST" … with distinct payloads
  seq -f "rec-%08g" "$1" $(($1 + $2 - 1)) >"$work/input-$1.txt"
  "$bin" produce --config "$work/harness.yaml" --input "$work/input-$1.txt" --create-shards 6 \
    >/dev/null 2>"$work/produce-$1.log" || { cat "$work/produce-$1.log"; fail "produce"; }
  total=$(($1 + $2 - 1))
}

step "image $image: $(podman image inspect --format '{{.Size}}' "$image") bytes"
[[ $(podman image inspect --format '{{.Config.User}}' "$image") == 10001:10001 ]] ||
  fail "the image's user is not 10001:10001"

step "1-2. one container: records flow Kinesis → container → Pulsar; /ready from outside"
produce 1 3000
port_a=$(free_port)
t0=$(now)
start worker-a "$port_a"
wait_ready "$port_a" 60 || { podman logs worker-a | tail -20; fail "/ready did not answer 200 within 60 s"; }
t1=$(now)
echo "measured: container start → /ready 200: $(elapsed "$t0" "$t1") s"
[[ $(curl -sf "http://127.0.0.1:$port_a/health") == alive ]] || fail "/health"

tail_topic() { "$bin" tail --url "$SHARDLINE_PULSAR_URL" --topic "$topic" --idle 8s --max-payload 40 2>/dev/null |
  sed -n 's/.* payload=\(rec-[0-9]*\).*/\1/p'; }
deadline=$(($(date +%s) + 90))
while :; do
  got=$(tail_topic | sort -u | wc -l)
  ((got >= 3000)) && break
  (($(date +%s) < deadline)) || fail "only $got of 3000 records reached Pulsar"
done
echo "ok: 3000 records through the container into $topic"
curl -sf "http://127.0.0.1:$port_a/metrics" >"$work/metrics.txt" || fail "/metrics"
python3 deploy/grafana/check.py --metrics "$work/metrics.txt" >/dev/null ||
  { python3 deploy/grafana/check.py --metrics "$work/metrics.txt"; fail "the worker served metrics the definitions do not list"; }
echo "ok: /metrics served $(grep -c '^# TYPE' "$work/metrics.txt") families, all in host/src/metrics/defs.rs"

step "3. non-root, read-only root filesystem, writes only to the cache volume"
pid=$(podman inspect --format '{{.State.Pid}}' worker-a)
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[[ $uid == 10001 ]] || fail "PID 1 of the container runs as uid $uid"
[[ $(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' worker-a) == true ]] || fail "root filesystem writable"
changes=$(podman diff worker-a | grep -v -E '^[ACD] /(var/cache/shardline|etc/shardline)(/|$)' |
  grep -v -E '^[ACD] /(var|var/cache|etc|run|dev|proc|sys)(/(hosts|hostname|resolv\.conf|\.containerenv))?$' || true)
[[ -z $changes ]] || fail "the container changed its filesystem: $changes"
if [[ -n $stages ]]; then
  vol=$(podman volume inspect --format '{{.Mountpoint}}' worker-a-cache)
  n=$(find "$vol" -type f | wc -l)
  ((n > 0)) || fail "no compiled component in the cache volume"
  echo "ok: uid 10001, read-only root, the compiled component in the cache volume ($n file(s), owner $(stat -c %u "$vol"))"
else
  echo "ok: uid 10001, read-only root (no guest built: the component cache was not exercised)"
fi

step "4. three containers of one application share 6 shards"
port_b=$(free_port); port_c=$(free_port)
start worker-b "$port_b"
start worker-c "$port_c"
wait_ready "$port_b" 60 && wait_ready "$port_c" 60 || fail "workers b, c not ready"
t0=$(now)
deadline=$(($(date +%s) + 60))
until [[ $(balance) == "2 2 2 " ]]; do
  (($(date +%s) < deadline)) || { status; fail "not balanced 2/2/2 after 60 s: $(balance)"; }
  sleep 0.5
done
echo "measured: three containers balanced 2/2/2 in $(elapsed "$t0" "$(now)") s after b and c were ready"
# b and c stole 4 of worker-a's 6 leases by graceful handoff: the lease table names them
# at once, while worker-a reads those shards until its next renewal sees the request,
# drains, checkpoints and hands each over. Wait until it has handed over all four (a lease
# it lost instead, after the handoff timeout, counts too).
moved_a() {
  local handed lost
  handed=$(podman logs worker-a 2>&1 | grep -c 'released lease: handed over' || true)
  lost=$(curl -sf "http://127.0.0.1:$port_a/metrics" | awk '/^shardline_leases_lost_total/ { s += $2 } END { print s + 0 }')
  echo $((handed + lost))
}
deadline=$(($(date +%s) + 30))
until (($(moved_a) >= 4)); do
  (($(date +%s) < deadline)) || fail "worker-a did not hand over its stolen leases: $(moved_a) moved"
  sleep 0.2
done

step "5. podman stop (SIGTERM): drain, checkpoint, release within the grace period"
# Under load: records are put while worker-a drains.
(
  for first in 3001 3501 4001 4501 5001 5501; do
    seq -f "rec-%08g" "$first" $((first + 499)) >"$work/load-$first.txt"
    "$bin" produce --config "$work/harness.yaml" --input "$work/load-$first.txt" >/dev/null 2>&1
    sleep 0.5
  done
) &
load=$!
total=6000
sleep 1.5
t0=$(now)
podman stop -t "$GRACE" worker-a >/dev/null &
stop_pid=$!
released=
deadline=$(($(date +%s) + GRACE))
while :; do
  if [[ -z $(leases_of worker-a) ]]; then released=$(now); break; fi
  (($(date +%s) < deadline)) || break
  sleep 0.1
done
wait "$stop_pid"
t_exit=$(now)
[[ -n $released ]] || fail "worker-a still held leases after the grace period"
code=$(podman inspect --format '{{.State.ExitCode}}' worker-a)
[[ $code == 0 ]] || { podman logs worker-a | tail -20; fail "worker-a exited $code (137: killed at the end of the grace period)"; }
# (Logs to a file first: `grep -q` closing the pipe early would fail it under pipefail.)
podman logs worker-a >"$work/worker-a.log" 2>&1
grep -q '"released lease' "$work/worker-a.log" || { tail -25 "$work/worker-a.log"; fail "no 'released lease' in worker-a's log"; }
grep -q 'stopped cleanly' "$work/worker-a.log" || fail "worker-a did not stop cleanly"
# The worker's own clock: from its "signal received" line to its last "released lease".
in_log=$(python3 -c '
import json, sys
from datetime import datetime
sig = rel = None
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    msg = e.get("fields", {}).get("message", "")
    t = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
    if msg.startswith("signal received") and sig is None:
        sig = t
    if msg.startswith("released lease"):  # "released lease: handed over" to a live worker
        rel = t
print(f"{(rel - sig).total_seconds():.2f}" if sig and rel else "?")' <"$work/worker-a.log")
echo "measured: SIGTERM → last lease released (worker's log): $in_log s; → none left in the lease table (polled): $(elapsed "$t0" "$released") s; → exit 0: $(elapsed "$t0" "$t_exit") s (grace $GRACE s)"
deadline=$(($(date +%s) + 60))
until [[ $(balance) == "3 3 " ]]; do
  (($(date +%s) < deadline)) || { status; fail "b and c did not take a's shards: $(balance)"; }
  sleep 0.2
done
echo "measured: SIGTERM → the other two hold all 6 leases: $(elapsed "$t0" "$(now)") s"
wait "$load"

deadline=$(($(date +%s) + 120))
while :; do
  tail_topic >"$work/got.txt"
  got=$(sort -u "$work/got.txt" | wc -l)
  ((got >= total)) && break
  (($(date +%s) < deadline)) || fail "only $got of $total distinct records reached Pulsar"
done
all=$(wc -l <"$work/got.txt")
echo "ok: $total records, $got distinct in Pulsar, $((all - got)) delivered twice"
((all == got)) || fail "records delivered twice after a graceful stop"

# One after the other: two workers stopped at the same moment may hand leases to each
# other, and such a lease then waits for expiry (docs/operations.md, Scaling down).
podman stop -t "$GRACE" worker-b >/dev/null
podman stop -t "$GRACE" worker-c >/dev/null
for n in worker-b worker-c; do
  [[ $(podman inspect --format '{{.State.ExitCode}}' "$n") == 0 ]] || fail "$n exited non-zero"
done
[[ -z $(status | awk '/^worker .*active leases$/') ]] || { status; fail "leases still held after all stopped"; }
step "6. rolling upgrade without duplicates: max_per_worker = shards / workers, stop first, then start"
app=img-roll-$id
stream=img-roll-$id
topic=persistent://public/default/img-roll-$id
lease_extra="  max_per_worker: 2"
config 0 | sed "/^stages:/,\$d" >"$work/harness.yaml"   # the host-side commands load no component
total=0
produce 1 1200
for n in roll-1 roll-2 roll-3; do start "$n" "$(free_port)"; done
deadline=$(($(date +%s) + 60))
until [[ $(balance) == "2 2 2 " ]]; do
  (($(date +%s) < deadline)) || { status; fail "not balanced 2/2/2 after 60 s: $(balance)"; }
  sleep 0.5
done
# Records keep coming while the workers are replaced one by one.
(
  first=1201
  for _ in $(seq 12); do
    seq -f "rec-%08g" "$first" $((first + 99)) >"$work/roll-$first.txt"
    "$bin" produce --config "$work/harness.yaml" --input "$work/roll-$first.txt" >/dev/null 2>&1
    first=$((first + 100))
    sleep 1
  done
) &
load=$!
t0=$(now)
for n in roll-1 roll-2 roll-3; do
  podman stop -t "$GRACE" "$n" >/dev/null
  [[ $(podman inspect --format '{{.State.ExitCode}}' "$n") == 0 ]] || fail "$n exited non-zero"
  port=$(free_port)
  start "$n-new" "$port"
  wait_ready "$port" 60 || fail "$n-new not ready"
  deadline=$(($(date +%s) + 60))
  until [[ $(leases_of "$n-new") == 2 ]]; do
    (($(date +%s) < deadline)) || { status; fail "$n-new did not take the 2 released leases"; }
    sleep 0.2
  done
done
echo "measured: three workers replaced one at a time in $(elapsed "$t0" "$(now)") s"
wait "$load"
total=2400
deadline=$(($(date +%s) + 120))
while :; do
  tail_topic >"$work/got-roll.txt"
  got=$(sort -u "$work/got-roll.txt" | wc -l)
  ((got >= total)) && break
  (($(date +%s) < deadline)) || fail "only $got of $total distinct records reached Pulsar"
done
all=$(wc -l <"$work/got-roll.txt")
echo "ok: rolling upgrade: $total records, $got distinct in Pulsar, $((all - got)) delivered twice"
((all == got)) || fail "records delivered twice during the rolling upgrade"
podman stop -t "$GRACE" roll-1-new roll-2-new roll-3-new >/dev/null

step "image test passed"
