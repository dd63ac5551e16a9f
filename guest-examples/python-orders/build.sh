#!/usr/bin/env bash
# Builds the Python orders example into a component:
#
#   guest-examples/python-orders/build.sh [OUT]   (default: target/guests/orders-python.wasm)
#
# sdk/python/build.sh does the work (componentize-py from dev/setup's venv). Skips the
# ~15 s build when app.py, the SDK, the WIT and the tool's version are unchanged since the
# last build of OUT.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-${SHARDLINE_GUESTS_OUT:-$repo/target/guests}/orders-python.wasm}"
venv="${SHARDLINE_COMPONENTIZE_PY:-${HOME:?}/.cache/shardline/componentize-py}"
# shellcheck source=../lib/stamp.sh
source "$here/../lib/stamp.sh"

stamp="$(
  {
    stamp_of "$here/app.py" "$here/build.sh" "$repo"/sdk/python/{shardline.py,build.sh} "$repo"/wit/*.wit
    "$venv/bin/componentize-py" --version 2>/dev/null || true
  } | sha256sum | cut -c1-32
)"
if up_to_date "$out" "$stamp"; then
  exit 0
fi
"$repo/sdk/python/build.sh" "$here" "$out"
record_stamp "$out" "$stamp"
