# bench/lib.sh — shared by the bench scripts (sourced, not run).
#
# Release builds go to $CARGO_TARGET_DIR, by default the folder .ci/run uses, so a bench
# after CI only builds what changed.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/shardline/ci-target}
STACK_HOME=${SHARDLINE_STACK_HOME:-$HOME/.cache/shardline/stack}
FAST_PORT=${SHARDLINE_BENCH_FERRO_PORT:-4570}

# Builds the release binary; sets $bin. SHARDLINE_BENCH_BIN=PATH uses that binary instead
# (a saved copy, to compare a change against it without rebuilding).
build_release() {
  if [[ -n ${SHARDLINE_BENCH_BIN:-} ]]; then
    bin=$SHARDLINE_BENCH_BIN
    return
  fi
  cargo build --release --locked -p shardline >&2
  bin=$CARGO_TARGET_DIR/release/shardline
}

# Starts a ferrokinesis without limits on 127.0.0.1:$FAST_PORT, in its own network
# namespace (it binds 0.0.0.0), stopped when the script exits. Sets $FAST_ENDPOINT.
start_fast_ferrokinesis() {
  local sock
  sock=$(mktemp -u /tmp/shardline-bench-ferro.XXXXXX.sock)
  setsid dev/stack.d/netns-bridge "$sock" "$FAST_PORT" 4567 -- \
    "$STACK_HOME"/ferrokinesis-*/root/bin/ferrokinesis --port 4567 --create-stream-ms 0 \
    --shard-limit 1000 --log-level warn >/tmp/shardline-bench-ferro.log 2>&1 &
  fast_pid=$!
  trap 'kill -- -$fast_pid 2>/dev/null || true; rm -f "'"$sock"'"' EXIT
  FAST_ENDPOINT=http://127.0.0.1:$FAST_PORT
  for _ in $(seq 100); do
    curl -s -o /dev/null -X POST "$FAST_ENDPOINT/" \
      -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: Kinesis_20131202.ListStreams' \
      -H "X-Amz-Date: $(date -u +%Y%m%dT%H%M%SZ)" \
      -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000' \
      -d '{}' && return 0
    sleep 0.1
  done
  echo "ferrokinesis did not start on $FAST_ENDPOINT" >&2
  return 1
}

# CPU seconds (user+system) a process has used so far.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

# Resident memory of a process in MiB: `rss_mib PID VmRSS` now, `rss_mib PID VmHWM` peak.
rss_mib() {
  awk -v k="$2:" '$1 == k { printf "%d", $2 / 1024 }' "/proc/$1/status"
}

# dynamodb_call ACTION JSON: one DynamoDB API call to the local server (it checks no
# signature); prints the answer.
dynamodb_call() {
  curl -s -X POST "$SHARDLINE_DYNAMODB_ENDPOINT" \
    -H 'Content-Type: application/x-amz-json-1.0' -H "X-Amz-Target: DynamoDB_20120810.$1" \
    -H "X-Amz-Date: $(date -u +%Y%m%dT%H%M%SZ)" \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000' \
    -d "$2"
}

# kcl3_lease_table NAME: creates a KCL 3.x lease table as the KCL would leave it, with its
# `LeaseOwnerToLeaseKeyIndex` index. Works around a gap of dynalite: the KCL 3.x adds that
# index to an on-demand table with an UpdateTable that gives no ProvisionedThroughput (as
# AWS accepts for on-demand tables), and dynalite refuses it ("Value null at
# 'globalSecondaryIndexUpdates.1.member.create.provisionedThroughput'"), so the KCL never
# starts. Given the table with its index, the KCL finds both and goes on, as on AWS.
kcl3_lease_table() {
  local answer
  answer=$(dynamodb_call CreateTable "{\"TableName\":\"$1\",\"BillingMode\":\"PAY_PER_REQUEST\",
    \"AttributeDefinitions\":[{\"AttributeName\":\"leaseKey\",\"AttributeType\":\"S\"},
      {\"AttributeName\":\"leaseOwner\",\"AttributeType\":\"S\"}],
    \"KeySchema\":[{\"AttributeName\":\"leaseKey\",\"KeyType\":\"HASH\"}],
    \"GlobalSecondaryIndexes\":[{\"IndexName\":\"LeaseOwnerToLeaseKeyIndex\",
      \"KeySchema\":[{\"AttributeName\":\"leaseOwner\",\"KeyType\":\"HASH\"},
        {\"AttributeName\":\"leaseKey\",\"KeyType\":\"RANGE\"}],
      \"Projection\":{\"ProjectionType\":\"KEYS_ONLY\"}}]}")
  grep -q '"TableDescription"' <<<"$answer" || { echo "cannot create the KCL lease table $1: $answer" >&2; return 1; }
}
