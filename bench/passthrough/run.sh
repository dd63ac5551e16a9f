#!/usr/bin/env bash
# bench/passthrough/run.sh — the consumer's cost: Kinesis (an unlimited ferrokinesis, the
# fast emulator) → `shardline run` with the identity component (tests/guests/passthrough,
# one Wasm call per batch) → Pulsar standalone; then the same with the AWS KCL for Java
# (bench/kcl) on the same stream and data. Prints one `key=value` line per phase; copy them
# into BENCHMARKS.md with this command.
#
#   bench/passthrough/run.sh [RECORDS] [SHARDS] [SIZE]
#                            (default 500,000 records, 8 shards, 100-byte records)
#
# Phases:
#   setup     versions: the KCL, Java and the heap the JVM chose
#   idle      a worker holding SHARDS leases of an empty stream, 10 s after it started
#             reading them: resident memory
#   catch-up  RECORDS SIZE-byte records (10,000 keys, not aggregated) already in the stream,
#             read from TRIM_HORIZON by `shardline run` until Pulsar has them all
#   kcl       the same records, the same stream, read again from TRIM_HORIZON by the KCL
#             (a fresh application name, so a fresh lease table) into a fresh topic
#   ratio     KCL ÷ Shardline: CPU per record, records/s, peak memory
#
# catch-up and kcl print, for the consumer process (the whole JVM for the KCL: user+system
# of every thread, from /proc/PID/stat):
#   startup_s                start → first record in Pulsar (the KCL spends most of it
#                            waiting on its lease-assignment timers)
#   flow_s, records_per_s    first record in Pulsar → all RECORDS in Pulsar
#   cpu_s_per_million        CPU from process start (startup included) per million records
#   flow_cpu_s_per_million   CPU during flow_s per million records (steady cost)
#   cpu_share, ferrokinesis_cpu_share, relay_cpu_share, pulsar_cpu_share, machine_busy,
#   other_cpu_share
#                            cores used during flow_s by the consumer, the emulator, the
#                            socat relays in front of it (lib.sh's netns-bridge), Pulsar, and
#                            the fraction of all the machine's CPU time busy (anyone's), and
#                            the cores busy with anything else (other_cpu_share: this
#                            script's polling, and whatever else runs on the machine)
#   emulator_cpu_s_per_million  CPU of ferrokinesis and its relays from process start, per
#                            million records (a small stream is read before the first record
#                            reaches Pulsar, so the shares above miss it)
#   peak_rss_mib             VmHWM of the consumer
#   in_pulsar                Pulsar's msgInCounter at the end (> RECORDS: duplicates)
#
# SHARDLINE_BENCH_QUEUE            source.receive_queue_size (default 10000, the product's)
# SHARDLINE_BENCH_QUEUE_BYTES      source.receive_queue_bytes (default: the product's)
# SHARDLINE_BENCH_IN_FLIGHT_BYTES  source.max_in_flight_bytes (default: the product's)
# SHARDLINE_BENCH_DEDUP=1          catch-up writes with `deduplication: true` into a fresh
#                                  namespace with broker deduplication enabled (the cost of
#                                  effectively-once; the KCL phase is unchanged)
# SHARDLINE_BENCH_KCL=0            skip the KCL phase (and its Maven build)
# SHARDLINE_BENCH_KCL_JAVA_OPTS    JVM flags for the KCL (default none: the JVM's defaults)
# SHARDLINE_BENCH_KCL_PROPERTIES=none  the KCL sends key and data only (default pulsar-io:
#                                  the four kinesis.* properties and event time, as Shardline
#                                  and the Pulsar IO Kinesis source do)
# SHARDLINE_BENCH_KCL_BATCHING=false  Pulsar producer batching off for the KCL (default on,
#                                  as in Shardline's sink, the Java client and Pulsar IO)
# Needs `dev/stack up`, the test guests (`guest-examples/build.sh`) and, for the KCL phase,
# Java 17 and Maven (bench/kcl is built here from Maven Central).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N=${1:-500000}
SHARDS=${2:-8}
SIZE=${3:-100}
QUEUE=${SHARDLINE_BENCH_QUEUE:-10000} # source.receive_queue_size
QUEUE_BYTES=${SHARDLINE_BENCH_QUEUE_BYTES:-}
IN_FLIGHT_BYTES=${SHARDLINE_BENCH_IN_FLIGHT_BYTES:-}
KCL=${SHARDLINE_BENCH_KCL:-1}
DEDUP=${SHARDLINE_BENCH_DEDUP:-0}
NS=public/default # where catch-up writes; a fresh deduplicating one with DEDUP=1
KCL_JAVA_OPTS=${SHARDLINE_BENCH_KCL_JAVA_OPTS:-}
KCL_BATCHING=${SHARDLINE_BENCH_KCL_BATCHING:-true}
KCL_PROPERTIES=${SHARDLINE_BENCH_KCL_PROPERTIES:-pulsar-io}
source bench/lib.sh

config() { # app stream topic
  cat <<YAML
application: $1
source:
  stream: $2
  initial_position: trim_horizon
  receive_queue_size: $QUEUE
${QUEUE_BYTES:+  receive_queue_bytes: $QUEUE_BYTES
}${IN_FLIGHT_BYTES:+  max_in_flight_bytes: $IN_FLIGHT_BYTES
}aws:
  region: us-east-1
  credentials: {type: static, access_key_id: test, secret_access_key: test}
  endpoints: {kinesis: "$FAST_ENDPOINT", dynamodb: "$SHARDLINE_DYNAMODB_ENDPOINT"}
stages:
  pipeline:
    component: $guest
sinks:
  pulsar:
    pulsar: {service_url: "$SHARDLINE_PULSAR_URL", topic: "$3", deduplication: $4}
YAML
}

produce() { # stream count
  "$bin" produce --config "$work/idle.yaml" --endpoint "$FAST_ENDPOINT" --stream "$1" \
    --create-shards "$SHARDS" --sample random --count "$2" --size "$SIZE" --keys 10000 \
    --progress 0s --rate-limit 100000 --no-aggregation >/dev/null 2>&1
}

in_pulsar() { # topic name — curl and grep only: this runs every 0.2 s while measuring
  curl -sf "$SHARDLINE_PULSAR_ADMIN/admin/v2/persistent/${2:-public/default}/$1/stats" |
    grep -o '"msgInCounter":[0-9]*' | cut -d: -f2 | sort -n | tail -1 | grep . || echo 0
}

wait_log() { # file text count
  local n
  for _ in $(seq 600); do
    n=$(grep -c "$2" "$1" 2>/dev/null || true)
    ((${n:-0} >= $3)) && return 0
    sleep 0.1
  done
  echo "timed out waiting for $3 × '$2' in $1" >&2
  return 1
}

stop() { # pid — SIGTERM, then SIGKILL after 30 s
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 300); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# CPU seconds of the socat relays in front of ferrokinesis (lib.sh's netns-bridge: one
# process per connection each side, in ferrokinesis's session), reaped ones included.
relay_cpu_seconds() {
  local p
  for p in $(pgrep -s "$ferro"); do
    [[ $p == "$ferro" ]] || cat "/proc/$p/stat" 2>/dev/null || true
  done | awk -v hz="$(getconf CLK_TCK)" '{ s += $14 + $15 + $16 + $17 } END { printf "%.2f", s / hz }'
}

emulator_cpu_seconds() { # ferrokinesis and its relays
  python3 -c 'import sys; print(f"{float(sys.argv[1]) + float(sys.argv[2]):.2f}")' \
    "$(cpu_seconds "$ferro")" "$(relay_cpu_seconds)"
}

busy_ticks() { # "busy total" jiffies of the whole machine, from /proc/stat
  awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# The collector and heap the JVM chooses with KCL_JAVA_OPTS, e.g. "G1, heap 380-6028 MiB".
jvm_defaults() {
  # shellcheck disable=SC2086 # KCL_JAVA_OPTS is a list of flags
  java $KCL_JAVA_OPTS -XX:+PrintFlagsFinal -version 2>/dev/null |
    awk '$2 == "UseG1GC" && $4 == "true" { gc = "G1" } $2 == "UseParallelGC" && $4 == "true" { gc = "Parallel" }
         $2 == "UseSerialGC" && $4 == "true" { gc = "Serial" }
         $2 == "MaxHeapSize" { mx = int($4 / 1048576) } $2 == "InitialHeapSize" { ms = int($4 / 1048576) }
         END { printf "%s, heap %d-%d MiB", gc, ms, mx }'
}

build_kcl() {
  local out
  if ! out=$(mvn -s dev/stack.d/maven-settings.xml -B -q -f bench/kcl package 2>&1); then
    echo "$out" >&2
    exit 1
  fi
  printf 'setup     kcl=%s pulsar_client=%s java=%s java_opts="%s" jvm="%s" kcl_batching=%s kcl_properties=%s\n' \
    "$(grep -o '<kcl.version>[^<]*' bench/kcl/pom.xml | cut -d'>' -f2)" \
    "$(grep -o '<pulsar.version>[^<]*' bench/kcl/pom.xml | cut -d'>' -f2)" \
    "$(java -version 2>&1 | head -1 | grep -o '"[^"]*"' | tr -d '"')" \
    "$KCL_JAVA_OPTS" "$(jvm_defaults)" "$KCL_BATCHING" "$KCL_PROPERTIES"
}

# Watches PID fill TOPIC until it holds N records; prints the phase line and keeps the
# figures in result_<phase> for the ratio. t_start is when PID was started, emu_start the
# emulator's CPU (emulator_cpu_seconds) then.
measure() { # phase consumer pid topic log t_start emu_start [namespace]
  local phase=$1 consumer=$2 pid=$3 topic=$4 log=$5 t_start=$6 emu_start=$7 ns=${8:-public/default}
  local t_first cpu_first ferro_first relay_first pulsar_first busy_first
  local t_end cpu_end ferro_end relay_end pulsar_end busy_end peak count
  until (($(in_pulsar "$topic" "$ns") > 0)); do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; exit 1; }
    sleep 0.2
  done
  t_first=$(date +%s.%N) cpu_first=$(cpu_seconds "$pid")
  ferro_first=$(cpu_seconds "$ferro") relay_first=$(relay_cpu_seconds) pulsar_first=$(cpu_seconds "$pulsar")
  busy_first=$(busy_ticks)
  until (($(in_pulsar "$topic" "$ns") >= N)); do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; exit 1; }
    sleep 0.2
  done
  t_end=$(date +%s.%N) cpu_end=$(cpu_seconds "$pid")
  ferro_end=$(cpu_seconds "$ferro") relay_end=$(relay_cpu_seconds) pulsar_end=$(cpu_seconds "$pulsar")
  busy_end=$(busy_ticks)
  peak=$(rss_mib "$pid" VmHWM)
  stop "$pid"
  count=$(in_pulsar "$topic" "$ns")
  delete_topic "$ns" "$topic"
  local -n result=result_${phase//-/_}
  result=$(python3 - "$phase" "$consumer" "$N" "$SHARDS" "$SIZE" "$QUEUE" "$t_start" "$t_first" \
    "$t_end" "$cpu_first" "$cpu_end" "$ferro_first" "$ferro_end" "$pulsar_first" "$pulsar_end" \
    "$peak" "$count" "$busy_first" "$busy_end" "$relay_first" "$relay_end" "$emu_start" \
    "$(emulator_cpu_seconds)" <<'PY'
import os, sys
phase, consumer = sys.argv[1:3]
n, shards, size, queue = map(int, sys.argv[3:7])
t0, t1, t2, c1, c2, f1, f2, p1, p2 = map(float, sys.argv[7:16])
peak, count = int(sys.argv[16]), int(sys.argv[17])
(b1, tot1), (b2, tot2) = (map(int, a.split()) for a in sys.argv[18:20])
r1, r2, e0, e2 = map(float, sys.argv[20:24])
flow = t2 - t1
busy, cores = (b2 - b1) / max(tot2 - tot1, 1), os.cpu_count()
print(f"{phase:<9} consumer={consumer} records={n} shards={shards} size={size} "
      + (f"queue={queue} " if consumer == "shardline" else "")
      + f"seconds={t2 - t0:.1f} startup_s={t1 - t0:.1f} flow_s={flow:.1f} "
      f"records_per_s={n / flow:.0f} cpu_s_per_million={c2 / n * 1e6:.1f} "
      f"flow_cpu_s_per_million={(c2 - c1) / n * 1e6:.1f} cpu_share={(c2 - c1) / flow:.2f} "
      f"peak_rss_mib={peak} ferrokinesis_cpu_share={(f2 - f1) / flow:.2f} relay_cpu_share={(r2 - r1) / flow:.2f} "
      f"emulator_cpu_s_per_million={(e2 - e0) / n * 1e6:.1f} "
      f"pulsar_cpu_share={(p2 - p1) / flow:.2f} machine_busy={busy:.2f} "
      f"other_cpu_share={busy * cores - ((c2 - c1) + (f2 - f1) + (r2 - r1) + (p2 - p1)) / flow:.2f} "
      f"in_pulsar={count}")
PY
  )
  echo "$result"
}

ratio() { # the catch-up and kcl lines → KCL ÷ Shardline
  python3 - "$result_catch_up" "$result_kcl" <<'PY'
import sys
s, k = (dict(f.split("=", 1) for f in line.split()[1:]) for line in sys.argv[1:3])
r = lambda key: float(k[key]) / float(s[key])
print(f"ratio     kcl_over_shardline_cpu_per_record={r('cpu_s_per_million'):.2f} "
      f"kcl_over_shardline_flow_cpu_per_record={r('flow_cpu_s_per_million'):.2f} "
      f"kcl_over_shardline_records_per_s={r('records_per_s'):.2f} "
      f"kcl_over_shardline_peak_rss={r('peak_rss_mib'):.2f}")
PY
}

# Each run writes RECORDS messages into fresh topics that nothing reads again: deleted once
# counted, or Pulsar standalone's storage grows by gigabytes per afternoon of runs.
delete_topic() { # namespace topic
  curl -sf -X DELETE "$SHARDLINE_PULSAR_ADMIN/admin/v2/persistent/$1/$2?force=true" >/dev/null ||
    echo "could not delete topic persistent://$1/$2" >&2
}

delete_table() { # name
  dynamodb_call DeleteTable "{\"TableName\": \"$1\"}" >/dev/null || true
}

idle_phase() {
  config "bench-idle-$id" "bench-idle-$id" "persistent://public/default/bench-idle-$id" false >"$work/idle.yaml"
  produce "bench-idle-$id" 0
  SHARDLINE_LOG=info "$bin" run --config "$work/idle.yaml" 2>"$work/idle.log" &
  local pid=$!
  wait_log "$work/idle.log" "processing shard" "$SHARDS"
  sleep 10 # idle is a duration, not a condition
  printf 'idle      shards=%d rss_mib=%d\n' "$SHARDS" "$(rss_mib $pid VmRSS)"
  stop $pid
}

shardline_phase() {
  local topic=bench-pt-$id t_start emu_start dedup=false
  if ((DEDUP)); then
    NS=public/bench-dedup-$id dedup=true
    curl -sf -X PUT "$SHARDLINE_PULSAR_ADMIN/admin/v2/namespaces/$NS" >/dev/null
    curl -sf -X POST -H 'Content-Type: application/json' -d true \
      "$SHARDLINE_PULSAR_ADMIN/admin/v2/namespaces/$NS/deduplication" >/dev/null
  fi
  config "bench-pt-$id" "$stream" "persistent://$NS/$topic" $dedup >"$work/pt.yaml"
  emu_start=$(emulator_cpu_seconds) t_start=$(date +%s.%N)
  SHARDLINE_LOG=info "$bin" run --config "$work/pt.yaml" 2>"$work/pt.log" &
  measure catch-up shardline $! "$topic" "$work/pt.log" "$t_start" "$emu_start" "$NS"
}

kcl_phase() {
  local app=bench-kcl-$id topic=bench-kcl-$id t_start emu_start
  kcl3_lease_table "$app"
  emu_start=$(emulator_cpu_seconds) t_start=$(date +%s.%N)
  # shellcheck disable=SC2086 # KCL_JAVA_OPTS is a list of flags
  java $KCL_JAVA_OPTS -cp 'bench/kcl/target/classes:bench/kcl/target/lib/*' bench.KclPassthrough \
    --stream "$stream" --application "$app" --topic "persistent://public/default/$topic" \
    --kinesis-endpoint "$FAST_ENDPOINT" --dynamodb-endpoint "$SHARDLINE_DYNAMODB_ENDPOINT" \
    --pulsar-url "$SHARDLINE_PULSAR_URL" --batching "$KCL_BATCHING" --properties "$KCL_PROPERTIES" \
    2>"$work/kcl.log" &
  measure kcl kcl $! "$topic" "$work/kcl.log" "$t_start" "$emu_start"
  delete_table "$app"
}

result_catch_up='' result_kcl=''
build_release
[[ $KCL == 0 ]] || build_kcl
eval "$(dev/stack env)"
start_fast_ferrokinesis
guest=${SHARDLINE_GUESTS_OUT:-$PWD/target/guests}/passthrough.wasm
[[ -f $guest ]] || { echo "no $guest: run guest-examples/build.sh" >&2; exit 1; }
work=$(mktemp -d /tmp/shardline-bench-pt.XXXXXX)
id=$RANDOM$RANDOM
# This script's own ferrokinesis (another run may have one with the same command line):
# netns-bridge execs it, so it is $fast_pid itself.
ferro=$fast_pid
[[ $(cat "/proc/$ferro/comm") == ferrokinesis ]] || { echo "pid $ferro is not ferrokinesis" >&2; exit 1; }
pulsar=$(pgrep -f PulsarStandaloneStarter | head -1)

idle_phase
stream=bench-pt-$id
produce "$stream" "$N"
shardline_phase
if [[ $KCL != 0 ]]; then
  kcl_phase
  ratio
fi
rm -rf "$work"
