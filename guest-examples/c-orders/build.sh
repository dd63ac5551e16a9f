#!/usr/bin/env bash
# Builds the C orders example into a component:
#
#   guest-examples/c-orders/build.sh [OUT]   (default: target/guests/orders-c.wasm)
#
# sdk/c/build.sh does the work (clang-19 + wasi-libc, wasm-tools and the preview1 adapter
# from dev/setup). Skips the build when nothing changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-${SHARDLINE_GUESTS_OUT:-$repo/target/guests}/orders-c.wasm}"
tools="${SHARDLINE_GUEST_TOOLS:-${HOME:?}/.cache/shardline/tools}"
# shellcheck source=../lib/stamp.sh
source "$here/../lib/stamp.sh"

stamp="$(
  {
    stamp_of "$here/orders.c" "$here/build.sh" "$repo"/sdk/c/{shardline.c,shardline.h,build.sh} \
      "$repo"/sdk/c/gen/pipeline.{c,h} "$repo"/wit/*.wit
    "$tools/bin/wasm-tools" --version 2>/dev/null || true
    sha256sum <"$tools/wasi_snapshot_preview1.reactor.wasm" 2>/dev/null || true
    "${SHARDLINE_WASM_CC:-clang-19}" --version 2>/dev/null | head -1
  } | sha256sum | cut -c1-32
)"
if up_to_date "$out" "$stamp"; then
  exit 0
fi
"$repo/sdk/c/build.sh" "$here" "$out"
record_stamp "$out" "$stamp"
