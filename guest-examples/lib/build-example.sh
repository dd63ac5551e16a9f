# Sourced by the non-Rust examples' build.sh: builds one example into a component with
# `shardline build-guest`, skipping the build when nothing it reads has changed.
#
#   build_example LANG OUT
#
# The binary: $SHARDLINE, else the debug host of this repository, built here by cargo if it
# is not there yet (CARGO_TARGET_DIR is honoured). What a build reads, and so its stamp: the
# example's files, its SDK (sdk/LANG), the WIT, the build logic (host/src/guest_build/)
# and the version of the language's tool.
# shellcheck source=stamp.sh
source "$(dirname "${BASH_SOURCE[0]}")/stamp.sh"

build_example() {
  local lang=$1 out=$2
  local repo here shardline stamp
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  here="$repo/guest-examples/$lang-orders"
  stamp="$(
    {
      # shellcheck disable=SC2046
      stamp_of $(find "$here" "$repo/sdk/$lang" -type f ! -path '*/template/*' \
        ! -path '*/target/*' ! -name README.md | sort) "$repo"/wit/*.wit \
        $(find "$repo/host/src/guest_build" -type f | sort)
      case $lang in
        python) "${SHARDLINE_COMPONENTIZE_PY:-$HOME/.cache/shardline/componentize-py}/bin/componentize-py" --version ;;
        js) cat "${SHARDLINE_COMPONENTIZE_JS:-$HOME/.cache/shardline/componentize-js}/package-lock.json" ;;
        go) go version ;;
        c) "${SHARDLINE_WASM_CC:-clang-19}" --version | head -1 ;;
      esac 2>/dev/null || true
    } | sha256sum | cut -c1-32
  )"
  if up_to_date "$out" "$stamp"; then
    return 0
  fi
  shardline="${SHARDLINE:-}"
  if [[ -z $shardline ]]; then
    (cd "$repo" && cargo build --quiet --locked -p shardline --bin shardline)
    shardline="${CARGO_TARGET_DIR:-$repo/target}/debug/shardline"
  fi
  "$shardline" build-guest "$here" --out "$out" >/dev/null
  record_stamp "$out" "$stamp"
}
