#!/usr/bin/env bash
# Builds {{name}}.wasm with `shardline build-guest` (needs Node and componentize-js 0.23.0: `npm install -g @bytecodealliance/componentize-js@0.23.0`).
# $SHARDLINE names the shardline binary when it is not on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
"${SHARDLINE:-shardline}" build-guest . --out {{name}}.wasm
