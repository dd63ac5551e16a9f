#!/usr/bin/env bash
# deploy/iam/check.sh [COMMAND...] — the IAM coverage check. Runs COMMAND (default: the whole
# test suite, `cargo test --workspace --locked`) with every AWS endpoint of the local stack
# (SHARDLINE_{KINESIS,FERROKINESIS,DYNAMODB,CLOUDWATCH}_ENDPOINT, from `dev/stack env`)
# behind a recording relay, then fails if Shardline sent an operation that
# deploy/iam-policy.json does not allow (or deploy/iam/outside-policy.txt does not name),
# and lists the policy's actions that no request used.
#
# The tests read their endpoints from those variables, and so do the configs they give the
# binary: pointing the variables at the relays puts every request of the suite through them
# without a change to a test. Shardline's requests are told from the tests' own set-up calls
# by the `app/shardline` the binary puts in its user agent (host/src/aws.rs).
# The log of requests is left in $CARGO_TARGET_DIR/iam-requests.jsonl (or target/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

: "${SHARDLINE_KINESIS_ENDPOINT:?endpoints of the local stack: eval \"\$(dev/stack env)\" first}"
: "${SHARDLINE_DYNAMODB_ENDPOINT:?}" "${SHARDLINE_CLOUDWATCH_ENDPOINT:?}" "${SHARDLINE_FERROKINESIS_ENDPOINT:?}"
bin=$(deploy/tools.sh iam-recorder)
recorder=$bin/shardline-iam-recorder

out=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"
log=$out/iam-requests.jsonl
addrs=$out/iam-relays.env
: >"$log"
: >"$addrs"
"$recorder" relay -log "$log" \
  kinesis="$SHARDLINE_KINESIS_ENDPOINT" \
  ferrokinesis="$SHARDLINE_FERROKINESIS_ENDPOINT" \
  dynamodb="$SHARDLINE_DYNAMODB_ENDPOINT" \
  cloudwatch="$SHARDLINE_CLOUDWATCH_ENDPOINT" >"$addrs" &
relay_pid=$!
trap 'kill "$relay_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [[ $(wc -l <"$addrs") -ge 4 ]] && break
  sleep 0.05
done
[[ $(wc -l <"$addrs") -ge 4 ]] || { echo "iam/check.sh: the relays did not start" >&2; exit 1; }
while IFS='=' read -r name endpoint; do
  case $name in
    kinesis) export SHARDLINE_KINESIS_ENDPOINT=$endpoint ;;
    ferrokinesis) export SHARDLINE_FERROKINESIS_ENDPOINT=$endpoint ;;
    dynamodb) export SHARDLINE_DYNAMODB_ENDPOINT=$endpoint ;;
    cloudwatch) export SHARDLINE_CLOUDWATCH_ENDPOINT=$endpoint ;;
  esac
done <"$addrs"
echo "==> IAM coverage: AWS requests recorded through $(tr '\n' ' ' <"$addrs")"

(($#)) || set -- cargo test --workspace --locked
rc=0
"$@" || rc=$?

"$recorder" check -policy deploy/iam-policy.json -outside deploy/iam/outside-policy.txt -log "$log" ||
  rc=$((rc ? rc : 1))
exit "$rc"
