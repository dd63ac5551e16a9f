#!/usr/bin/env bash
# Builds {{name}}.wasm with `shardline build-guest` (needs Rust and `rustup target add wasm32-wasip2`).
# $SHARDLINE names the shardline binary when it is not on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
"${SHARDLINE:-shardline}" build-guest . --out {{name}}.wasm
