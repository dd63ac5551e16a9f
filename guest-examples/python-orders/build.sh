#!/usr/bin/env bash
# Builds the Python orders example into a component:
#
#   guest-examples/python-orders/build.sh [OUT]   (default: target/guests/orders-python.wasm)
#
# Uses componentize-py from the venv dev/setup makes (SHARDLINE_COMPONENTIZE_PY overrides
# the venv). Skips the ~15 s build when app.py, orders.py, the WIT and the tool's version
# are unchanged since the last build of OUT.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-${SHARDLINE_GUESTS_OUT:-$repo/target/guests}/orders-python.wasm}"
venv="${SHARDLINE_COMPONENTIZE_PY:-${HOME:?}/.cache/shardline/componentize-py}"
tool="$venv/bin/componentize-py"
# shellcheck source=../lib/stamp.sh
source "$here/../lib/stamp.sh"

if [[ ! -x $tool ]]; then
  echo "error: $tool not found: run dev/setup (it installs componentize-py)" >&2
  exit 1
fi

stamp="$(
  {
    stamp_of "$here/app.py" "$here/orders.py" "$here/build.sh" "$repo"/wit/*.wit
    "$tool" --version
  } | sha256sum | cut -c1-32
)"
if up_to_date "$out" "$stamp"; then
  exit 0
fi

mkdir -p "$(dirname "$out")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/app.py" "$here/orders.py" "$work/"
# componentize-py writes the bindings (package wit_world) into the app's folder: build in a
# scratch copy so the source folder stays clean.
(cd "$work" && "$tool" -d "$repo/wit" -w pipeline componentize app -o "$work/out.wasm" >/dev/null)
mv -f "$work/out.wasm" "$out"
record_stamp "$out" "$stamp"
