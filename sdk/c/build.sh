#!/usr/bin/env bash
# Builds a C Shardline guest into a component:
#
#   build.sh APP_DIR OUT.wasm
#
# Compiles every .c file of APP_DIR with this folder's shardline.c and the committed
# bindings (gen/pipeline.c) for wasm32-wasi as a reactor (clang with wasi-libc: Debian's
# clang-19, lld-19, wasi-libc and libclang-rt-19-dev-wasm32, or $SHARDLINE_WASM_CC, e.g. a
# wasi-sdk clang), then `wasm-tools component embed` (the `pipeline` world) and `component
# new` with the WASI preview1 reactor adapter of wasmtime 48.0.8 (wasi-libc's stdio makes
# preview1 calls). The WIT comes from $SHARDLINE_WIT, else the first `wit/` folder going up
# from this script. wasm-tools and the adapter: $SHARDLINE_GUEST_TOOLS (default
# ~/.cache/shardline/tools, as dev/setup installs them), else `wasm-tools` on PATH and
# $SHARDLINE_ADAPTER.
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
cc="${SHARDLINE_WASM_CC:-clang-19}"
[[ -n $wasm_tools ]] || { echo "error: wasm-tools not found (cargo install wasm-tools@1.258.3)" >&2; exit 1; }
[[ -s $adapter ]] || { echo "error: the preview1 reactor adapter $adapter is missing: run dev/setup or set SHARDLINE_ADAPTER" >&2; exit 1; }
command -v "$cc" >/dev/null || { echo "error: $cc not found (Debian: clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$cc" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
  -Wno-unused-parameter -Wno-missing-field-initializers \
  -I "$sdk" -I "$sdk/gen" -o "$work/core.wasm" \
  "$app"/*.c "$sdk/shardline.c" "$sdk/gen/pipeline.c" -lm
"$wasm_tools" component embed --world pipeline "$wit" "$work/core.wasm" -o "$work/embedded.wasm"
"$wasm_tools" component new "$work/embedded.wasm" \
  --adapt "wasi_snapshot_preview1=$adapter" -o "$work/out.wasm"
mkdir -p "$(dirname "$out")"
mv -f "$work/out.wasm" "$out"
