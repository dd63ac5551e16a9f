#!/usr/bin/env bash
# Builds a Go Shardline guest (a `main` package that calls shardline.OnRecord) into a
# component:
#
#   build.sh APP_DIR OUT.wasm
#
# 1. mainline Go (1.24+; 1.26 here): GOOS=wasip1 GOARCH=wasm -buildmode=c-shared makes a
#    reactor module whose exports are the //go:wasmexport functions of the bindings;
# 2. `wasm-tools component embed` adds the `pipeline` world's type information;
# 3. `wasm-tools component new` wraps it into a component, adapting Go's WASI preview1
#    calls with the preview1 *reactor* adapter of wasmtime 48.0.8.
# The WIT comes from $SHARDLINE_WIT, else the first `wit/` folder found going up from this
# script. wasm-tools and the adapter: $SHARDLINE_GUEST_TOOLS (default ~/.cache/shardline/tools,
# as dev/setup installs them), else `wasm-tools` on PATH and $SHARDLINE_ADAPTER.
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

tools="${SHARDLINE_GUEST_TOOLS:-${HOME:?}/.cache/shardline/tools}"
wasm_tools="$tools/bin/wasm-tools"
[[ -x $wasm_tools ]] || wasm_tools="$(command -v wasm-tools || true)"
adapter="${SHARDLINE_ADAPTER:-$tools/wasi_snapshot_preview1.reactor.wasm}"
[[ -n $wasm_tools ]] || { echo "error: wasm-tools not found (cargo install wasm-tools@1.258.3)" >&2; exit 1; }
[[ -s $adapter ]] || { echo "error: the preview1 reactor adapter $adapter is missing: run dev/setup or set SHARDLINE_ADAPTER" >&2; exit 1; }
command -v go >/dev/null || { echo "error: go not found (Go 1.24 or newer)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# -checklinkname=0: go.bytecodealliance.org/pkg links to runtime internals (go:linkname).
(cd "$app" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath \
  -ldflags=-checklinkname=0 -o "$work/core.wasm" .)
"$wasm_tools" component embed --world pipeline "$wit" "$work/core.wasm" -o "$work/embedded.wasm"
"$wasm_tools" component new "$work/embedded.wasm" \
  --adapt "wasi_snapshot_preview1=$adapter" -o "$work/out.wasm"
mkdir -p "$(dirname "$out")"
mv -f "$work/out.wasm" "$out"
