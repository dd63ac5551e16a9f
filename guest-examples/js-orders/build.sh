#!/usr/bin/env bash
# Builds the JavaScript orders example into a component:
#
#   guest-examples/js-orders/build.sh [OUT]   (default: target/guests/orders-js.wasm)
#
# sdk/js/build.sh does the work (componentize-js from dev/setup's npm folder). Skips the
# ~15 s build when app.js, the SDK, the WIT and the tool's version are unchanged.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-${SHARDLINE_GUESTS_OUT:-$repo/target/guests}/orders-js.wasm}"
prefix="${SHARDLINE_COMPONENTIZE_JS:-${HOME:?}/.cache/shardline/componentize-js}"
# shellcheck source=../lib/stamp.sh
source "$here/../lib/stamp.sh"

stamp="$(
  {
    stamp_of "$here/app.js" "$here/build.sh" "$repo"/sdk/js/{shardline.js,build.sh} "$repo"/wit/*.wit
    "$prefix/node_modules/.bin/componentize-js" --version 2>/dev/null || true
  } | sha256sum | cut -c1-32
)"
if up_to_date "$out" "$stamp"; then
  exit 0
fi
"$repo/sdk/js/build.sh" "$here" "$out"
record_stamp "$out" "$stamp"
