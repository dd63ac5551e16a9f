#!/usr/bin/env bash
# deploy/iam/modes.sh [BINARY] — the binary once in the modes the polling pipeline tests do not
# all reach at once: fan-out retrieval (ferrokinesis), a Kinesis sink and CloudWatch metrics
# (moto), about 15 s. Run it under deploy/iam/check.sh for a quick coverage check of those
# modes: `deploy/iam/check.sh deploy/iam/modes.sh` (the full check runs the whole suite).
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release/shardline}
: "${SHARDLINE_FERROKINESIS_ENDPOINT:?eval \"\$(dev/stack env)\" first}"
id=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cat >"$d/c.yaml" <<EOC
application: iam-$id
source:
  stream: iam-src-$id
  initial_position: trim_horizon
  retrieval: fan_out
  fan_out:
    backoff: 1s
    deregister_on_shutdown: true
aws:
  region: us-east-1
  credentials: {type: static, access_key_id: test, secret_access_key: test}
  endpoints:
    kinesis: $SHARDLINE_FERROKINESIS_ENDPOINT
    dynamodb: $SHARDLINE_DYNAMODB_ENDPOINT
    cloudwatch: $SHARDLINE_CLOUDWATCH_ENDPOINT
leases: {duration: 6s}
checkpoint: {interval: 1s}
metrics: {cloudwatch: true, flush_interval: 1s}
sinks:
  out:
    kinesis:
      stream: iam-dst-$id
EOC
sed "s/stream: iam-src-$id/stream: iam-dst-$id/" "$d/c.yaml" > "$d/dst.yaml"
"$bin" produce --config "$d/dst.yaml" --count 1 --create-shards 1 >/dev/null 2>&1
"$bin" produce --config "$d/c.yaml" --count 200 --create-shards 2 >/dev/null 2>&1
"$bin" run --config "$d/c.yaml" >"$d/log" 2>&1 &
p=$!
sleep 12
kill -TERM $p; wait $p || { tail -20 "$d/log"; exit 1; }
echo "modes.sh: fan-out, Kinesis sink and CloudWatch ran ($(grep -c "" "$d/log") log lines)"
