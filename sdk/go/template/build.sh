#!/usr/bin/env bash
# Builds {{name}}.wasm with `shardline build-guest` (needs Go 1.24 or newer; no other tool).
# $SHARDLINE names the shardline binary when it is not on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
"${SHARDLINE:-shardline}" build-guest . --out {{name}}.wasm
