#!/usr/bin/env bash
# Builds {{name}}.wasm (needs Node and componentize-js 0.23.0:
# `npm install @bytecodealliance/componentize-js@0.23.0`, then put its .bin on PATH).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
sdk/js/build.sh . {{name}}.wasm
echo "built {{name}}.wasm"
