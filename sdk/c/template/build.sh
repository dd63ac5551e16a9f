#!/usr/bin/env bash
# Builds {{name}}.wasm (needs clang with wasi-libc, wasm-tools 1.258.3 and the WASI
# preview1 reactor adapter of wasmtime 48.0.8: see sdk/c/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
sdk/c/build.sh . {{name}}.wasm
echo "built {{name}}.wasm"
