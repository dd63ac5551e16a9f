#!/usr/bin/env bash
# Builds the JavaScript orders example into a component:
#
#   guest-examples/js-orders/build.sh [OUT]   (default: target/guests/orders-js.wasm)
#
# Uses componentize-js from the npm folder dev/setup makes (SHARDLINE_COMPONENTIZE_JS
# overrides it), with the WASI features the guest does not use disabled (`-d http
# fetch-event`: otherwise the component imports wasi:http, which the host does not link).
# Skips the ~15 s build when orders.js, the WIT and the tool's version are unchanged.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-${SHARDLINE_GUESTS_OUT:-$repo/target/guests}/orders-js.wasm}"
prefix="${SHARDLINE_COMPONENTIZE_JS:-${HOME:?}/.cache/shardline/componentize-js}"
tool="$prefix/node_modules/.bin/componentize-js"
# shellcheck source=../lib/stamp.sh
source "$here/../lib/stamp.sh"

if [[ ! -x $tool ]]; then
  echo "error: $tool not found: run dev/setup (it installs componentize-js)" >&2
  exit 1
fi

stamp="$(
  {
    stamp_of "$here/orders.js" "$here/build.sh" "$repo"/wit/*.wit
    "$tool" --version
  } | sha256sum | cut -c1-32
)"
if up_to_date "$out" "$stamp"; then
  exit 0
fi

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$tool" "$here/orders.js" --wit "$repo/wit" --world-name pipeline \
  -d http fetch-event -o "$tmp" >/dev/null
mv -f "$tmp" "$out"
record_stamp "$out" "$stamp"
