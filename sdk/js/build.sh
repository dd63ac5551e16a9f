#!/usr/bin/env bash
# Builds a JavaScript Shardline guest into a component:
#
#   build.sh APP_DIR OUT.wasm
#
# APP_DIR holds app.js (an ES module that imports "./shardline.js" and calls onRecord), and
# any other modules it imports; this folder's shardline.js is packed beside them. The WIT
# comes from $SHARDLINE_WIT, else the first `wit/` folder found going up from this script.
# componentize-js: $SHARDLINE_COMPONENTIZE_JS (an npm folder), else
# ~/.cache/shardline/componentize-js (dev/setup), else `componentize-js` on PATH
# (`npm install @bytecodealliance/componentize-js@0.23.0`). `-d http fetch-event` keeps
# wasi:http out of the component (the host does not link it).
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

prefix="${SHARDLINE_COMPONENTIZE_JS:-${HOME:?}/.cache/shardline/componentize-js}"
tool="$prefix/node_modules/.bin/componentize-js"
[[ -x $tool ]] || tool="$(command -v componentize-js || true)"
[[ -n $tool ]] || { echo "error: componentize-js not found (npm install @bytecodealliance/componentize-js@0.23.0)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$app"/*.js "$work/"
cp "$sdk/shardline.js" "$work/"
# The entry module: the app registers its handler, the SDK holds the export.
printf 'import "./app.js";\nexport { processor } from "./shardline.js";\n' >"$work/shardline-component.js"
mkdir -p "$(dirname "$out")"
(cd "$work" && "$tool" shardline-component.js --wit "$wit" --world-name pipeline \
  -d http fetch-event -o "$work/out.wasm" >/dev/null)
mv -f "$work/out.wasm" "$out"
