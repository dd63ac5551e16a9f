#!/usr/bin/env bash
# Builds every guest component and puts them in one folder:
#
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/orders.wasm         guest-examples/rust-orders (SDK)
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/orders-handwritten.wasm  tests/guests/orders-handwritten
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/passthrough.wasm    tests/guests/passthrough
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/stamp.wasm          tests/guests/stamp
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/orders-c.wasm       guest-examples/c-orders
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/orders-python.wasm  guest-examples/python-orders
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/orders-js.wasm      guest-examples/js-orders
#   ${SHARDLINE_GUESTS_OUT:-<repo>/target/guests}/orders-go.wasm      guest-examples/go-orders
#
# Rust: the wasm32-wasip2 target makes a component directly (no wasm-tools step); cargo's
# own freshness check makes a second run quick; CARGO_TARGET_DIR is honoured. The other
# languages use the toolchains dev/setup installs, through each example's build.sh (which
# calls its SDK's build.sh in sdk/<lang>/), skipping the build when nothing changed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out_dir="${SHARDLINE_GUESTS_OUT:-$repo/target/guests}"

# package name -> output name (the crate's [lib] name, hence the artifact's file name)
# (a `-` in the output name is `_` in the crate's artifact)
guests=(
  "orders-guest:orders"
  "orders-handwritten-guest:orders-handwritten"
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
  src="$target_dir/wasm32-wasip2/guest/${name//-/_}.wasm"
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

# The other languages: same behaviour as rust-orders (tests/it/guest_golden.rs checks it).
for lang in c python js go; do
  script="$repo/guest-examples/$lang-orders/build.sh"
  [[ -f $script ]] || continue
  dst="$out_dir/orders-$lang.wasm"
  started=$SECONDS
  "$script" "$dst"
  took=$((SECONDS - started))
  printf '%s\t%s bytes%s\n' "$dst" "$(wc -c <"$dst" | tr -d ' ')" \
    "$( ((took > 1)) && printf '\t(built in %ss)' "$took")"
done
