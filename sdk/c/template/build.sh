#!/usr/bin/env bash
# Builds {{name}}.wasm with `shardline build-guest` (needs clang with the wasm32 target and wasi-libc; on Debian `apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32`).
# $SHARDLINE names the shardline binary when it is not on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
"${SHARDLINE:-shardline}" build-guest . --out {{name}}.wasm
