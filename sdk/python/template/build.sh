#!/usr/bin/env bash
# Builds {{name}}.wasm with `shardline build-guest` (needs componentize-py 0.25.1: `pip install componentize-py==0.25.1`).
# $SHARDLINE names the shardline binary when it is not on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
"${SHARDLINE:-shardline}" build-guest . --out {{name}}.wasm
