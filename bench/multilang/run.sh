#!/usr/bin/env bash
# bench/multilang/run.sh — what Python and Node.js users run today against Shardline: the
# KCL's MultiLangDaemon (the KCL for Java, driving a record-processor subprocess per shard
# over stdin/stdout, JSON messages with base64 data) with the orders logic written
# idiomatically in Python (amazon-kclpy) and in JavaScript (aws-kcl), against `shardline
# run` with the Python and JavaScript orders guests, on the same stream and data. Prints one
# `key=value` line per phase; copy them into BENCHMARKS.md with this command.
#
# Results: BENCHMARKS.md, "Against the KCL's MultiLangDaemon".
#
#   bench/multilang/run.sh [RECORDS] [SHARDS]      (default 100,000 records, 2 shards)
#
# Phases (each reads the whole stream from TRIM_HORIZON with a fresh application name):
#   setup             versions, and which jars were used
#   kcl-python        MultiLangDaemon + bench/multilang/orders_processor.py (amazon-kclpy)
#   kcl-node          MultiLangDaemon + bench/multilang/orders_processor.js (aws-kcl)
#   shardline-<guest> `shardline run` with target/guests/orders-<guest>.wasm: the Python
#                     and JavaScript orders examples on their SDKs (guest-examples/build.sh)
#   ratio             Shardline's records per CPU-second over the MultiLangDaemon's
#
# Each phase line has records_per_s (first record processed → all RECORDS processed),
# cpu_s (user+system of the whole process tree: the JVM and every processor subprocess for
# the KCL, the one shardline process otherwise — from start, startup included),
# cpu_us_per_record, and records_per_cpu_s (records per core-second of that CPU).
# Shardline also publishes every order to Pulsar (its sink is part of its CPU); the
# MultiLangDaemon has no sink, so its processors only build the messages and count them.
#
# The jars: each package lists its Maven jars in a pom.xml and downloads them from Maven
# Central itself. amazon-kclpy 3.2.0 asks for the KCL 3.5.3, which this machine's Maven
# Central does not serve (404 for amazon-kinesis-client-3.5.3 and
# amazon-kinesis-client-multilang-3.5.3, so `pip install amazon-kclpy==3.2.0` fails); the
# Python phase therefore uses its jar list with the KCL 3.1.3 (the newest multilang 3.x
# served here) and the package's Python modules from its source distribution. aws-kcl
# 2.3.2's list (KCL 2.7.2) resolves as it is.
#
# Needs `dev/stack up` (dynalite for the KCL's lease tables and Shardline's, Pulsar),
# the release binary (built here), Java 17, Python 3, Node.js and the guests
# (`guest-examples/build.sh`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N=${1:-100000}
SHARDS=${2:-2}
source bench/lib.sh

cache=${SHARDLINE_BENCH_MULTILANG_CACHE:-$HOME/.cache/shardline/multilang}
KCLPY_VERSION=3.2.0
AWSKCL_VERSION=2.3.2
KCLPY_KCL=3.1.3 # instead of 3.5.3, see above

# Downloads the jars a pom.xml lists (explicit versions, as each package's own downloader
# reads it) into a folder; $2: a KCL version to use instead of the listed one.
fetch_jars() { # pom dir [kcl-version]
  mkdir -p "$2"
  python3 - "$1" "$2" "${3:-}" <<'PY'
import os, sys, urllib.request, xml.etree.ElementTree as ET
pom, dest, kcl = sys.argv[1:4]
ns = "{http://maven.apache.org/POM/4.0.0}"
root = ET.parse(pom).getroot()
props = {f"${{{c.tag.replace(ns, '')}}}": c.text for c in root.find(ns + "properties")}
for d in root.iter(ns + "dependency"):
    g, a, v = (d.find(ns + x).text for x in ("groupId", "artifactId", "version"))
    v = props.get(v, v)
    if kcl and g == "software.amazon.kinesis":
        v = kcl
    f = os.path.join(dest, f"{a}-{v}.jar")
    if os.path.exists(f):
        continue
    url = f"https://repo1.maven.org/maven2/{g.replace('.', '/')}/{a}/{v}/{a}-{v}.jar"
    try:
        urllib.request.urlretrieve(url, f + ".part")
    except Exception as e:
        sys.exit(f"cannot download {g}:{a}:{v} from {url}: {e}")
    os.replace(f + ".part", f)
PY
}

setup_python() {
  local dir=$cache/kclpy-$KCLPY_VERSION
  if [[ ! -f $dir/ok ]]; then
    rm -rf "$dir" && mkdir -p "$dir"
    # Only the source distribution: pip's metadata step needs wheel (a venv of its own).
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install -q wheel setuptools >/dev/null
    "$dir/venv/bin/pip" download -q --no-deps --no-binary :all: "amazon-kclpy==$KCLPY_VERSION" \
      -d "$dir" >/dev/null 2>&1 || true
    [[ -f $dir/amazon_kclpy-$KCLPY_VERSION.tar.gz ]] || { echo "cannot download amazon-kclpy $KCLPY_VERSION" >&2; exit 1; }
    tar -xzf "$dir/amazon_kclpy-$KCLPY_VERSION.tar.gz" -C "$dir"
    fetch_jars "$dir/amazon_kclpy-$KCLPY_VERSION/pom.xml" "$dir/jars" "$KCLPY_KCL"
    touch "$dir/ok"
  fi
  PY_SRC=$dir/amazon_kclpy-$KCLPY_VERSION PY_JARS=$dir/jars
}

setup_node() {
  local dir=$cache/aws-kcl-$AWSKCL_VERSION
  if [[ ! -f $dir/ok ]]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund "aws-kcl@$AWSKCL_VERSION" >/dev/null)
    fetch_jars "$dir/node_modules/aws-kcl/pom.xml" "$dir/jars"
    touch "$dir/ok"
  fi
  NODE_DIR=$dir NODE_JARS=$dir/jars
}

properties() { # app executable
  cat <<PROPS
executableName = $2
streamName = $stream
applicationName = $1
AwsCredentialsProvider = DefaultCredentialsProvider
initialPositionInStream = TRIM_HORIZON
regionName = us-east-1
kinesisEndpoint = $FAST_ENDPOINT
dynamoDBEndpoint = $SHARDLINE_DYNAMODB_ENDPOINT
metricsLevel = NONE
PROPS
}

# CPU seconds of a process and all its descendants (live ones; reaped children included
# through cutime/cstime of their parent).
tree_cpu_seconds() {
  local pids
  pids=$(pstree -pT "$1" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()' || echo "$1")
  for p in $pids; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk -v hz="$(getconf CLK_TCK)" '{ s += $14 + $15 + $16 + $17 } END { printf "%.2f", s / hz }'
}

progress_count() { # dir
  cat "$1"/* 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}

metrics_count() { # port
  curl -sf "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk '/^shardline_wasm_records_in_total/ { s += $NF } END { printf "%d", s }'
}

stop() { # pid
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 300); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  pkill -KILL -P "$1" 2>/dev/null || true
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Waits until `count` says N, then prints the phase line.
measure() { # phase pid log count-command...
  local phase=$1 pid=$2 log=$3
  shift 3
  local t0 t1 t2 c2 n
  t0=$(date +%s.%N)
  until (($("$@") > 0)); do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$log" >&2; echo "$phase: the consumer stopped" >&2; return 1; }
    (($(date +%s) - ${t0%.*} < 300)) || { tail -30 "$log" >&2; echo "$phase: nothing after 300 s" >&2; return 1; }
    sleep 0.2
  done
  t1=$(date +%s.%N)
  until (($("$@") >= N)); do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$log" >&2; echo "$phase: the consumer stopped" >&2; return 1; }
    sleep 0.2
  done
  t2=$(date +%s.%N) c2=$(tree_cpu_seconds "$pid") n=$("$@")
  stop "$pid"
  local -n result=result_${phase//-/_}
  result=$(python3 - "$phase" "$N" "$SHARDS" "$t_start" "$t1" "$t2" "$c2" "$n" <<'PY'
import sys
phase, n, shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0, t1, t2, cpu = map(float, sys.argv[4:8])
seen = int(sys.argv[8])
print(f"{phase:<17} records={n} shards={shards} seconds={t2 - t0:.1f} startup_s={t1 - t0:.1f} "
      f"flow_s={t2 - t1:.1f} records_per_s={n / (t2 - t1):.0f} cpu_s={cpu:.1f} "
      f"cpu_us_per_record={cpu / n * 1e6:.1f} records_per_cpu_s={n / cpu:.0f} seen={seen}")
PY
  )
  echo "$result"
}

kcl_phase() { # phase executable jars
  local app=bench-ml-$1-$id progress=$work/progress-$1
  mkdir -p "$progress"
  kcl3_lease_table "$app"
  properties "$app" "$2" >"$work/$1.properties"
  t_start=$(date +%s.%N)
  (cd "$work" && ORDERS_PROGRESS_DIR=$progress AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_REGION=us-east-1 PYTHONPATH=$PY_SRC NODE_PATH=$NODE_DIR/node_modules \
    exec java -cp "$3/*" software.amazon.kinesis.multilang.MultiLangDaemon \
    --properties-file "$work/$1.properties" >"$work/$1.log" 2>&1) &
  measure "$1" $! "$work/$1.log" progress_count "$progress"
}

shardline_phase() { # guest
  local phase=shardline-$1 port=$((19000 + RANDOM % 1000))
  cat >"$work/$phase.yaml" <<YAML
application: bench-ml-$1-$id
source:
  stream: $stream
  initial_position: trim_horizon
aws:
  region: us-east-1
  credentials: {type: static, access_key_id: test, secret_access_key: test}
  endpoints: {kinesis: "$FAST_ENDPOINT", dynamodb: "$SHARDLINE_DYNAMODB_ENDPOINT"}
metrics:
  listen: $port
stages:
  pipeline:
    component: $guests/orders-$1.wasm
sinks:
  pulsar:
    pulsar: {service_url: "$SHARDLINE_PULSAR_URL", topic: "persistent://public/default/bench-ml-$id"}
YAML
  t_start=$(date +%s.%N)
  SHARDLINE_LOG=warn "$bin" run --config "$work/$phase.yaml" 2>"$work/$phase.log" &
  measure "$phase" $! "$work/$phase.log" metrics_count "$port"
}

ratio() {
  python3 - "$@" <<'PY'
import sys
lines = {l.split()[0]: dict(f.split("=", 1) for f in l.split()[1:]) for l in sys.argv[1:] if l}
out = []
for lang, kcl in (("python", "kcl-python"), ("js", "kcl-node")):
    if kcl not in lines:
        continue
    base = float(lines[kcl]["records_per_cpu_s"])
    for name, v in lines.items():
        if name.startswith(f"shardline-{lang}"):
            out.append(f"{name}_over_{kcl}_per_core={float(v['records_per_cpu_s']) / base:.2f}")
print("ratio             " + " ".join(out))
PY
}

build_release
eval "$(dev/stack env)"
start_fast_ferrokinesis
guests=${SHARDLINE_GUESTS_OUT:-$PWD/target/guests}
work=$(mktemp -d /tmp/shardline-bench-ml.XXXXXX)
id=$RANDOM$RANDOM
setup_python
setup_node
printf 'setup             amazon_kclpy=%s kcl_for_python=%s aws_kcl=%s kcl_for_node=%s java=%s python=%s node=%s\n' \
  "$KCLPY_VERSION" "$KCLPY_KCL" "$AWSKCL_VERSION" \
  "$(grep -o '<kcl.version>[^<]*' "$NODE_DIR/node_modules/aws-kcl/pom.xml" | cut -d'>' -f2)" \
  "$(java -version 2>&1 | head -1 | grep -o '"[^"]*"' | tr -d '"')" \
  "$(python3 --version | cut -d' ' -f2)" "$(node --version)"

stream=bench-ml-$id
cat >"$work/produce.yaml" <<YAML
application: bench-ml-produce
source: {stream: $stream}
aws:
  region: us-east-1
  credentials: {type: static, access_key_id: test, secret_access_key: test}
sinks: {p: {pulsar: {service_url: "$SHARDLINE_PULSAR_URL", topic: t}}}
YAML
"$bin" produce --config "$work/produce.yaml" --endpoint "$FAST_ENDPOINT" --stream "$stream" \
  --create-shards "$SHARDS" --sample orders --count "$N" --progress 0s --rate-limit 100000 \
  --no-aggregation >/dev/null 2>&1

results=()
cp bench/multilang/orders_processor.py bench/multilang/orders_processor.js "$work/"
kcl_phase kcl-python "python3 $work/orders_processor.py" "$PY_JARS" && results+=("$result_kcl_python")
kcl_phase kcl-node "node $work/orders_processor.js" "$NODE_JARS" && results+=("$result_kcl_node")
for g in python js; do
  [[ -f $guests/orders-$g.wasm ]] || { echo "note: no $guests/orders-$g.wasm, phase skipped" >&2; continue; }
  shardline_phase "$g" || continue
  v=result_shardline_${g//-/_}
  results+=("${!v}")
done
ratio "${results[@]}"
rm -rf "$work"
