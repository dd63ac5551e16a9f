#!/usr/bin/env bash
# Builds every Rust guest component for wasm32-wasip2 and copies them to one folder:
#
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/orders.wasm        guest-examples/rust-orders
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/passthrough.wasm   tests/guests/passthrough
#
# The wasm32-wasip2 target makes a component directly (no wasm-tools step). Cargo's own
# freshness check makes a second run quick; CARGO_TARGET_DIR is honoured.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out_dir="${SHARDLINE_GUESTS_OUT:-$repo/target/guests}"

# package name -> output name (the crate's [lib] name, hence the artifact's file name)
guests=(
  "orders-guest:orders"
  "passthrough-guest:passthrough"
  "stamp-guest:stamp"
)

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "installing the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi

packages=()
for g in "${guests[@]}"; do
  packages+=(-p "${g%%:*}")
done

cd "$repo"
# One cargo invocation for all guests: shared dependencies build once.
cargo build --profile guest --target wasm32-wasip2 "${packages[@]}"

mkdir -p "$out_dir"
for g in "${guests[@]}"; do
  name="${g##*:}"
  src="$target_dir/wasm32-wasip2/guest/$name.wasm"
  dst="$out_dir/$name.wasm"
  if [[ ! -f "$src" ]]; then
    echo "error: $src was not produced" >&2
    exit 1
  fi
  # Copy only when it changed, so the destination's mtime means something.
  if ! cmp -s "$src" "$dst"; then
    cp "$src" "$dst.tmp"
    mv -f "$dst.tmp" "$dst"
  fi
  printf '%s\t%s bytes\n' "$dst" "$(wc -c <"$dst" | tr -d ' ')"
done
