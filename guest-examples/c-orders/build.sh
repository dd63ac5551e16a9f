#!/usr/bin/env bash
# Builds the C orders example into a component:
#
#   guest-examples/c-orders/build.sh [OUT]   (default: target/guests/orders-c.wasm)
#
# `shardline build-guest` does the work (lib/build-example.sh); skipped when nothing the
# build reads has changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/build-example.sh
source "$here/../lib/build-example.sh"
build_example c "${1:-${SHARDLINE_GUESTS_OUT:-$here/../../target/guests}/orders-c.wasm}"
