#!/usr/bin/env bash
# Builds {{name}}.wasm (needs Go 1.24+, wasm-tools 1.258.3 and the WASI preview1 reactor
# adapter of wasmtime 48.0.8: see sdk/go/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
sdk/go/build.sh . {{name}}.wasm
echo "built {{name}}.wasm"
