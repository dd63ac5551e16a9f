#!/usr/bin/env bash
# Regenerates the committed WIT bindings in internal/wit/ (run after a change to ../../wit):
# `wit-bindgen go` from wit-bindgen-cli 0.61.1 built with `--features c,go` (dev/setup
# installs it in ~/.cache/shardline/tools). The generated code imports
# go.bytecodealliance.org/pkg (go.mod pins the version the generator names).
# internal/wit/export_shardline_connector_processor/process.go is ours, not generated.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${SHARDLINE_GUEST_TOOLS:-${HOME:?}/.cache/shardline/tools}"
wit_bindgen="${WIT_BINDGEN:-$tools/bin/wit-bindgen}"
wit="${SHARDLINE_WIT:-$here/../../wit}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$wit_bindgen" go --world pipeline --pkg-name example.invalid/shardline/internal/wit \
  --out-dir "$work" "$wit" >/dev/null 2>&1
find "$here/internal/wit" -name wit_bindings.go -o -name wit_exports.go -o -name empty.s | xargs rm -f
cp -r "$work"/. "$here/internal/wit/"
