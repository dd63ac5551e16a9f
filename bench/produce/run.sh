#!/usr/bin/env bash
# bench/produce/run.sh — throughput and peak memory of `shardline produce` (the KPL-grade
# producer) into the local emulators. Prints one line per scenario; copy them into
# BENCHMARKS.md with this command.
#
#   bench/produce/run.sh [RECORDS]     (default 1,000,000; kinesis-local gets a tenth)
#   bench/produce/run.sh --vs-kpl [RECORDS [SIZE]]
#                                      Shardline vs the Amazon KPL (below)
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
#
# --vs-kpl: `shardline produce`, then the Amazon KPL (bench/kpl, built here with Maven)
# putting the same kind of records: RECORDS (default 1,000,000) of SIZE (default 100) random
# bytes, 10,000 partition keys, aggregation on, rate limit 100,000 % of the shard limits,
# 100 ms buffering, at most 100,000 records inside the producer; each into a fresh 16-shard
# stream of the unlimited ferrokinesis, so neither is throttled (retries=0 shows it). One
# line per producer (CPU seconds and µs per record, peak RSS, the emulator's CPU, what the
# stream holds afterwards) and a `ratio` line, KPL ÷ Shardline. The KPL's native process
# speaks HTTPS only: a socat terminates TLS in front of ferrokinesis for it (throw-away
# certificate); its CPU is shown as tls_proxy_cpu_s and charged to neither side. The KPL
# runs with EnableOldestFutureTracker off: on (its default) each result costs a linear
# search over the records outstanding (see bench/kpl); SHARDLINE_BENCH_KPL_TRACKER=true
# measures the default.
# Only the unlimited ferrokinesis is used (no dev/stack emulator). SHARDLINE_BENCH_COUNT=0
# skips reading the streams back; SHARDLINE_BENCH_TLS_PORT (default ferrokinesis's + 1);
# SHARDLINE_BENCH_PRODUCE_ARGS adds arguments to Shardline's `produce` (e.g. `--json`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VS_KPL=
if [[ ${1:-} == --vs-kpl ]]; then
  VS_KPL=1
  shift
fi
N=${1:-1000000}
source bench/lib.sh
build_release
[[ -n $VS_KPL ]] || eval "$(dev/stack env)"
start_fast_ferrokinesis

# ---- --vs-kpl: Shardline vs the Amazon KPL ------------------------------------------------

# A Kinesis call to the unlimited ferrokinesis (it checks no signatures).
kinesis_call() { # action json
  curl -sf -X POST "$FAST_ENDPOINT/" -H 'Content-Type: application/x-amz-json-1.1' \
    -H "X-Amz-Target: Kinesis_20131202.$1" -H "X-Amz-Date: $(date -u +%Y%m%dT%H%M%SZ)" \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000' \
    -d "$2"
}

create_stream() { # name shards
  kinesis_call CreateStream "{\"StreamName\":\"$1\",\"ShardCount\":$2}" >/dev/null
  for _ in $(seq 100); do
    kinesis_call DescribeStreamSummary "{\"StreamName\":\"$1\"}" |
      grep -q '"StreamStatus":"ACTIVE"' && return 0
    sleep 0.1
  done
  echo "stream $1 did not become ACTIVE" >&2
  return 1
}

# What a stream holds, read back from TRIM_HORIZON: stream_kinesis_records=N
# stream_user_records=N (aggregates unpacked, their MD5 checked) stream_data_mb=N (user data).
count_stream() { # name
  [[ ${SHARDLINE_BENCH_COUNT:-1} != 0 ]] || return 0
  python3 - "$FAST_ENDPOINT" "$1" <<'PY'
import base64, hashlib, json, sys, urllib.request
endpoint, stream = sys.argv[1:]
def call(action, body):
    req = urllib.request.Request(endpoint + "/", json.dumps(body).encode(), {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "Kinesis_20131202." + action,
        "X-Amz-Date": "20200101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7F) << s; s += 7
        if c < 0x80: return v, i
def user_records(blob):
    """(user records, user data bytes) in a Kinesis record, unpacking a KPL aggregate."""
    if len(blob) < 20 or blob[:4] != b"\xf3\x89\x9a\xc2":
        return 1, len(blob)
    body = blob[4:-16]
    if hashlib.md5(body).digest() != blob[-16:]:
        sys.exit("aggregate with a wrong MD5")
    n = size = i = 0
    while i < len(body):           # AggregatedRecord: field 3 = Record, repeated
        tag, i = varint(body, i)
        ln, i = varint(body, i)    # fields 1, 2, 3 are all length-delimited
        if tag == 0x1A:
            n += 1
            rec, j = body[i:i + ln], 0
            while j < len(rec):    # Record: field 3 = data
                t, j = varint(rec, j)
                if t & 7 == 0:
                    _, j = varint(rec, j)
                    continue
                l, j = varint(rec, j)
                if t == 0x1A: size += l
                j += l
        i += ln
    return n, size
kinesis = users = data = 0
for shard in call("ListShards", {"StreamName": stream})["Shards"]:
    it = call("GetShardIterator", {"StreamName": stream, "ShardId": shard["ShardId"],
                                   "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
    while it:
        r = call("GetRecords", {"ShardIterator": it, "Limit": 10000})
        for rec in r["Records"]:
            n, size = user_records(base64.b64decode(rec["Data"]))
            kinesis += 1; users += n; data += size
        if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
            break
        it = r.get("NextShardIterator")
print(f"stream_kinesis_records={kinesis} stream_user_records={users} stream_data_mb={data / 1e6:.1f}")
PY
}

# CPU seconds of a process and of the children it waited for (socat waits for the process it
# forks per connection).
cpu_seconds_with_children() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"
}

# `key=value` of a line: field LINE KEY
field() { grep -o " $2=[^ ]*" <<<" $1" | head -1 | cut -d= -f2; }

vs_kpl() { # size
  local size=$1 keys=10000 shards=16
  local tls_port=${SHARDLINE_BENCH_TLS_PORT:-$((FAST_PORT + 1))}
  local stream out time_line line emu0 emu1 tls0 tls1 cpu rss
  if ! out=$(mvn -s dev/stack.d/maven-settings.xml -B -q -f bench/kpl package 2>&1); then
    echo "$out" >&2
    exit 1
  fi
  local kpl_version
  kpl_version=$(grep -o '<kpl.version>[^<]*' bench/kpl/pom.xml | cut -d'>' -f2)

  # TLS for the KPL's native process (HTTPS only) in front of ferrokinesis (plain HTTP).
  tls_dir=$(mktemp -d /tmp/shardline-bench-tls.XXXXXX)
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" 2>/dev/null
  cat "$tls_dir/key.pem" "$tls_dir/cert.pem" >"$tls_dir/server.pem"
  socat "OPENSSL-LISTEN:$tls_port,bind=127.0.0.1,reuseaddr,fork,cert=$tls_dir/server.pem,verify=0" \
    "TCP:127.0.0.1:$FAST_PORT" &
  tls_pid=$!
  local prev
  eval "prev=( $(trap -p EXIT) )" # keep lib.sh's trap (it stops ferrokinesis)
  trap "kill $tls_pid 2>/dev/null || true; rm -rf '$tls_dir'; ${prev[2]:-}" EXIT
  for _ in $(seq 50); do
    [[ -n $(ss -Hltn "sport = :$tls_port") ]] && break
    sleep 0.1
  done

  printf 'setup records=%d size=%d keys=%d shards=%d kpl=%s java=%s jvm_defaults="%s"\n' \
    "$N" "$size" "$keys" "$shards" "$kpl_version" \
    "$(java -version 2>&1 | head -1 | grep -o '"[^"]*"' | tr -d '"')" \
    "$(java -XX:+PrintFlagsFinal -version 2>/dev/null |
      awk '$2 == "UseG1GC" && $4 == "true" { gc = "G1" } $2 == "UseParallelGC" && $4 == "true" { gc = "Parallel" }
           $2 == "UseSerialGC" && $4 == "true" { gc = "Serial" }
           $2 == "MaxHeapSize" { mx = int($4 / 1048576) } $2 == "InitialHeapSize" { ms = int($4 / 1048576) }
           END { printf "%s, heap %d-%d MiB", gc, ms, mx }')"

  # Shardline: one process; /usr/bin/time gives its CPU and peak RSS (ru_maxrss = VmHWM).
  stream=bench-vs-kpl-shardline-$RANDOM$RANDOM
  create_stream "$stream" "$shards"
  emu0=$(cpu_seconds "$fast_pid")
  out=$(/usr/bin/time -f 'time: cpu_s=%U+%S peak_rss_kib=%M' "$bin" produce --config "$cfg" \
    --endpoint "$FAST_ENDPOINT" --stream "$stream" --sample random --count "$N" --size "$size" \
    --keys "$keys" --rate-limit 100000 --progress 0s ${SHARDLINE_BENCH_PRODUCE_ARGS:-} 2>&1) ||
    { echo "$out" >&2; exit 1; }
  emu1=$(cpu_seconds "$fast_pid")
  line=$(grep '^produce:' <<<"$out" | sed 's/^produce: stream=[^ ]* //')
  time_line=$(grep '^time:' <<<"$out")
  sl_cpu=$(awk '{ print $1 + $2 }' <<<"$(field "$time_line" cpu_s | tr + ' ')")
  sl_rss=$(($(field "$time_line" peak_rss_kib) / 1024))
  sl_stored=$(field "$line" stored)
  sl_rps=$(field "$line" records_per_sec)
  sl_us=$(awk -v c="$sl_cpu" -v n="$sl_stored" 'BEGIN { printf "%.2f", c * 1e6 / n }')
  printf 'shardline %s cpu_s=%.2f cpu_us_per_record=%s peak_rss_mib=%d emulator_cpu_s=%.2f %s\n' \
    "$line" "$sl_cpu" "$sl_us" "$sl_rss" "$(awk -v a="$emu0" -v b="$emu1" 'BEGIN { print b - a }')" \
    "$(count_stream "$stream")"

  # The KPL: the JVM and its native child kinesis_producer. The child is gone when the JVM
  # exits, so KplProduce reads both from /proc itself: the child's VmHWM just before it stops
  # it, the child's CPU from the JVM's cutime+cstime once the JVM has waited for it (see
  # KplProduce.java). /usr/bin/time's total (JVM + waited-for children, JVM exit included) is
  # printed as time_cpu_s to check the sum; its %M would be the larger of the two processes,
  # not the sum, so it is not used.
  stream=bench-vs-kpl-kpl-$RANDOM$RANDOM
  create_stream "$stream" "$shards"
  emu0=$(cpu_seconds "$fast_pid")
  tls0=$(cpu_seconds_with_children "$tls_pid")
  # AWS_EC2_METADATA_DISABLED: the native SDK would otherwise probe 169.254.169.254.
  out=$(cd bench/kpl && AWS_EC2_METADATA_DISABLED=true /usr/bin/time -f 'time: cpu_s=%U+%S' \
    java -cp 'target/classes:target/lib/*' bench.KplProduce --stream "$stream" \
    --port "$tls_port" --count "$N" --size "$size" --keys "$keys" --rate-limit 100000 \
    --max-buffered-ms 100 --max-outstanding 100000 \
    --oldest-future-tracker "${SHARDLINE_BENCH_KPL_TRACKER:-false}" 2>&1) || { echo "$out" >&2; exit 1; }
  emu1=$(cpu_seconds "$fast_pid")
  for _ in $(seq 100); do # socat's per-connection processes end with the KPL's connections
    pgrep -P "$tls_pid" >/dev/null || break
    sleep 0.1
  done
  tls1=$(cpu_seconds_with_children "$tls_pid")
  line=$(grep '^kpl:' <<<"$out" | sed 's/^kpl: stream=[^ ]* //')
  time_line=$(grep '^time:' <<<"$out")
  local jvm native startup
  jvm=$(field "$line" jvm_cpu_s) native=$(field "$line" native_cpu_s)
  startup=$(field "$line" startup_cpu_s)
  kpl_cpu=$(awk -v a="$jvm" -v b="$native" 'BEGIN { printf "%.2f", a + b }')
  kpl_rss=$(($(field "$line" jvm_hwm_mib) + $(field "$line" native_hwm_mib)))
  kpl_stored=$(field "$line" stored)
  kpl_rps=$(field "$line" records_per_sec)
  kpl_us=$(awk -v c="$kpl_cpu" -v n="$kpl_stored" 'BEGIN { printf "%.2f", c * 1e6 / n }')
  kpl_us_run=$(awk -v c="$kpl_cpu" -v s="$startup" -v n="$kpl_stored" \
    'BEGIN { printf "%.2f", (c - s) * 1e6 / n }')
  printf 'kpl %s cpu_s=%.2f cpu_us_per_record=%s cpu_us_per_record_after_startup=%s peak_rss_mib=%d time_cpu_s=%.2f tls_proxy_cpu_s=%.2f emulator_cpu_s=%.2f %s\n' \
    "$line" "$kpl_cpu" "$kpl_us" "$kpl_us_run" "$kpl_rss" \
    "$(awk '{ print $1 + $2 }' <<<"$(field "$time_line" cpu_s | tr + ' ')")" \
    "$(awk -v a="$tls0" -v b="$tls1" 'BEGIN { print b - a }')" \
    "$(awk -v a="$emu0" -v b="$emu1" 'BEGIN { print b - a }')" "$(count_stream "$stream")"

  awk -v a="$kpl_us" -v b="$sl_us" -v c="$kpl_us_run" -v r="$kpl_rss" -v s="$sl_rss" \
    -v p="$kpl_rps" -v q="$sl_rps" 'BEGIN {
      printf "ratio kpl/shardline cpu_per_record=%.2f cpu_per_record_after_startup=%.2f peak_rss=%.2f records_per_sec=%.2f\n",
        a / b, c / b, r / s, p / q }'
}

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

if [[ -n $VS_KPL ]]; then
  vs_kpl "${2:-100}"
  exit
fi

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
