#!/usr/bin/env bash
# Builds {{name}}.wasm (needs componentize-py 0.25.1: `pip install componentize-py==0.25.1`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
sdk/python/build.sh . {{name}}.wasm
echo "built {{name}}.wasm"
