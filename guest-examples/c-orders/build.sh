#!/usr/bin/env bash
# Builds the C orders example into a component:
#
#   guest-examples/c-orders/build.sh [OUT]   (default: target/guests/orders-c.wasm)
#
# 1. `wit-bindgen c` generates pipeline.{c,h} and the component-type object from ../../wit;
# 2. clang-19 (Debian's, with wasi-libc) compiles and links a wasm32-wasi reactor module;
# 3. `wasm-tools component new` wraps it into a component, adapting the few WASI preview1
#    calls wasi-libc makes (stdio's fd_close/fd_write, never reached) with the preview1
#    adapter of our wasmtime version.
# dev/setup installs all of it (wit-bindgen and wasm-tools in ~/.cache/shardline/tools,
# the adapter beside them). Skips the build when nothing changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-${SHARDLINE_GUESTS_OUT:-$repo/target/guests}/orders-c.wasm}"
tools="${SHARDLINE_GUEST_TOOLS:-${HOME:?}/.cache/shardline/tools}"
wit_bindgen="$tools/bin/wit-bindgen"
wasm_tools="$tools/bin/wasm-tools"
adapter="$tools/wasi_snapshot_preview1.reactor.wasm"
cc="${SHARDLINE_WASM_CC:-clang-19}"
# shellcheck source=../lib/stamp.sh
source "$here/../lib/stamp.sh"

for t in "$wit_bindgen" "$wasm_tools" "$adapter"; do
  if [[ ! -f $t ]]; then
    echo "error: $t not found: run dev/setup (it installs the C guest toolchain)" >&2
    exit 1
  fi
done
if ! command -v "$cc" >/dev/null; then
  echo "error: $cc not found: run dev/setup (Debian packages clang-19, lld-19, wasi-libc)" >&2
  exit 1
fi

stamp="$(
  {
    stamp_of "$here/app.c" "$here/orders.c" "$here/orders.h" "$here/build.sh" "$adapter" \
      "$repo"/wit/*.wit
    "$wit_bindgen" --version
    "$wasm_tools" --version
    "$cc" --version | head -1
  } | sha256sum | cut -c1-32
)"
if up_to_date "$out" "$stamp"; then
  exit 0
fi

mkdir -p "$(dirname "$out")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! "$wit_bindgen" c "$repo/wit" --world pipeline --out-dir "$work" >"$work/log" 2>&1; then
  cat "$work/log" >&2
  exit 1
fi
"$cc" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
  -Wno-unused-parameter -Wno-missing-field-initializers \
  -I "$work" -o "$work/core.wasm" \
  "$here/app.c" "$here/orders.c" "$work/pipeline.c" "$work/pipeline_component_type.o"
"$wasm_tools" component new "$work/core.wasm" \
  --adapt "wasi_snapshot_preview1=$adapter" -o "$work/out.wasm"
mv -f "$work/out.wasm" "$out"
record_stamp "$out" "$stamp"
