#!/usr/bin/env bash
# Builds {{name}}.wasm (needs Rust and `rustup target add wasm32-wasip2`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --target wasm32-wasip2
cp "$target/wasm32-wasip2/release/{{crate}}.wasm" {{name}}.wasm
echo "built {{name}}.wasm"
