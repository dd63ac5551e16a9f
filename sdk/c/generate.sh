#!/usr/bin/env bash
# Regenerates the committed WIT bindings gen/pipeline.{c,h} (run after a change to ../../wit):
# `wit-bindgen c` from wit-bindgen-cli 0.61.1 (dev/setup installs it in
# ~/.cache/shardline/tools). No object file: `shardline build-guest` embeds the world's type
# information, so a C author needs no wit-bindgen.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${SHARDLINE_GUEST_TOOLS:-${HOME:?}/.cache/shardline/tools}"
wit_bindgen="${WIT_BINDGEN:-$tools/bin/wit-bindgen}"
wit="${SHARDLINE_WIT:-$here/../../wit}"
mkdir -p "$here/gen"
"$wit_bindgen" c --world pipeline --no-object-file --out-dir "$here/gen" "$wit" >/dev/null 2>&1
