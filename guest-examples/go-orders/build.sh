#!/usr/bin/env bash
# Builds the Go orders example into a component:
#
#   guest-examples/go-orders/build.sh [OUT]   (default: target/guests/orders-go.wasm)
#
# sdk/go/build.sh does the work (mainline Go, wasm-tools and the preview1 reactor adapter
# from dev/setup; the module go.bytecodealliance.org/pkg from the Go module proxy, pinned by
# go.sum). Skips the build when nothing changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-${SHARDLINE_GUESTS_OUT:-$repo/target/guests}/orders-go.wasm}"
tools="${SHARDLINE_GUEST_TOOLS:-${HOME:?}/.cache/shardline/tools}"
# shellcheck source=../lib/stamp.sh
source "$here/../lib/stamp.sh"

stamp="$(
  {
    stamp_of "$here"/{main.go,go.mod,go.sum,build.sh} "$repo"/sdk/go/{*.go,go.mod,go.sum,build.sh} \
      $(find "$repo/sdk/go/internal" -type f | sort) "$repo"/wit/*.wit
    go version 2>/dev/null || true
    "$tools/bin/wasm-tools" --version 2>/dev/null || true
    sha256sum <"$tools/wasi_snapshot_preview1.reactor.wasm" 2>/dev/null || true
  } | sha256sum | cut -c1-32
)"
if up_to_date "$out" "$stamp"; then
  exit 0
fi
"$repo/sdk/go/build.sh" "$here" "$out"
record_stamp "$out" "$stamp"
