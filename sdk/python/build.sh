#!/usr/bin/env bash
# Builds a Python Shardline guest into a component:
#
#   build.sh APP_DIR OUT.wasm
#
# APP_DIR holds app.py (and any other .py modules it imports); this folder's shardline.py
# is packed beside them. The WIT comes from $SHARDLINE_WIT, else the first `wit/` folder
# found going up from this script (the repository's, or a scaffolded project's).
# componentize-py: $SHARDLINE_COMPONENTIZE_PY (a venv), else ~/.cache/shardline/componentize-py
# (dev/setup), else `componentize-py` on PATH (`pip install componentize-py==0.25.1`).
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
app="$(cd "${1:?usage: build.sh APP_DIR OUT.wasm}" && pwd)"
out="${2:?usage: build.sh APP_DIR OUT.wasm}"

wit="${SHARDLINE_WIT:-}"
if [[ -z $wit ]]; then
  d="$sdk"
  while [[ $d != / && ! -f $d/wit/worlds.wit ]]; do d="$(dirname "$d")"; done
  wit="$d/wit"
fi
[[ -f $wit/worlds.wit ]] || { echo "error: no WIT folder found (set SHARDLINE_WIT)" >&2; exit 1; }

venv="${SHARDLINE_COMPONENTIZE_PY:-${HOME:?}/.cache/shardline/componentize-py}"
tool="$venv/bin/componentize-py"
[[ -x $tool ]] || tool="$(command -v componentize-py || true)"
[[ -n $tool ]] || { echo "error: componentize-py not found (pip install componentize-py==0.25.1)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$app"/*.py "$work/"
cp "$sdk/shardline.py" "$work/"
# The entry module: the app registers its handler, the SDK holds the export.
cat >"$work/shardline_component.py" <<'PY'
import app  # noqa: F401  (registers the handler)
from shardline import Processor  # noqa: F401  (the `processor` export)
PY
mkdir -p "$(dirname "$out")"
(cd "$work" && "$tool" -q -d "$wit" -w pipeline componentize shardline_component -o "$work/out.wasm")
mv -f "$work/out.wasm" "$out"
