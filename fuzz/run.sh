#!/usr/bin/env bash
# fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...] — builds the fuzz targets and runs each for
# SECONDS_PER_TARGET (default 60), with memory limits that turn an unbounded allocation
# into a failure. 0 seconds replays each target's corpus and seeds once, without fuzzing.
# Exits non-zero if any target failed, naming the input that did it.
# dev/test runs `fuzz/run.sh 20`; see fuzz/README.md for longer runs by hand.
#
# Environment:
#   SHARDLINE_FUZZ_TARGET     build folder, kept between runs (a fresh CI clone must not
#                             rebuild everything): default ~/.cache/shardline/fuzz-target
#   SHARDLINE_FUZZ_SANITIZER  none (default) or address; address builds in its own folder
#                             (SHARDLINE_FUZZ_TARGET-address) and runs slower
#   SHARDLINE_FUZZ_ARGS       more libFuzzer flags, e.g. "-jobs=2 -workers=2"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
fuzz_dir=$PWD
repo=$(cd .. && pwd)

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] || {
  echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
}
if ((seconds == 0)); then
  duration=(-runs=0) # libFuzzer: run the corpus, no mutations
else
  duration=(-max_total_time="$seconds")
fi
shift || true
targets=("$@")
((${#targets[@]})) || targets=(agg_decode config_parse wit_values)

sanitizer=${SHARDLINE_FUZZ_SANITIZER:-none}
target_dir=${SHARDLINE_FUZZ_TARGET:-$HOME/.cache/shardline/fuzz-target}
[[ $sanitizer == none ]] || target_dir=$target_dir-$sanitizer
export SHARDLINE_FUZZ_TARGET=$target_dir # the wit_values target finds its guest there
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# libFuzzer needs nightly; whatever CARGO_TARGET_DIR the caller set is for other builds.
unset CARGO_TARGET_DIR RUSTUP_TOOLCHAIN

say() { printf '\n--> %s\n' "$*"; }

# Tools, once per machine.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  say "installing the nightly toolchain (libFuzzer's instrumentation needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  say "installing the wasm32-wasip2 target (the wit_values guest)"
  rustup target add wasm32-wasip2
fi

# Both workspaces (fuzz/ and fuzz/guest/) build with the root Cargo.lock: every package the
# host shares with them is at the exact version the host is tested with; only what the
# fuzz crates add alone (libfuzzer-sys and its few dependencies) is resolved here. Their
# Cargo.lock files are copies, git-ignored, rewritten when the root one changes.
for ws in "$fuzz_dir" "$fuzz_dir/guest"; do
  cmp -s "$repo/Cargo.lock" "$ws/Cargo.lock" 2>/dev/null || cp "$repo/Cargo.lock" "$ws/Cargo.lock"
done

started=$SECONDS
say "building the wit_values guest (wasm32-wasip2) into $target_dir"
(cd guest && CARGO_TARGET_DIR=$target_dir cargo build --quiet --release --target wasm32-wasip2)

say "building the fuzz targets (sanitizer: $sanitizer) into $target_dir"
# Without a name `cargo fuzz build` builds every target; with one, only that one.
one=()
((${#targets[@]} == 1)) && one=("${targets[0]}")
build_log=$(mktemp)
if ! cargo +nightly fuzz build -s "$sanitizer" --target-dir "$target_dir" "${one[@]}" \
  >"$build_log" 2>&1; then
  grep -vE '^\s*(Compiling|Downloaded|Downloading|Blocking)' "$build_log" | tail -60
  echo "error: the fuzz build failed" >&2
  exit 1
fi
rm -f "$build_log"
for t in "${targets[@]}"; do
  [[ -x $target_dir/x86_64-unknown-linux-gnu/release/$t ]] || {
    echo "error: $t was not built" >&2
    exit 1
  }
done
echo "build: $((SECONDS - started))s"

# Seeds read along with each target's own corpus (fuzz/corpus/TARGET, git-ignored, where
# new inputs go): the real config files for config_parse, fuzz/seeds/TARGET for all.
seeds_of() {
  local t=$1
  [[ -d seeds/$t ]] && echo "seeds/$t"
  if [[ $t == config_parse ]]; then
    printf '%s\n' "$repo/config" "$repo/tests/golden/config" "$repo/tests/golden/convert"
  fi
}
max_len_of() {
  case $1 in
    config_parse) echo 16384 ;; # the largest seed, config/full.yaml, is under 8 KB
    *) echo 4096 ;;
  esac
}

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  mapfile -t seeds < <(seeds_of "$t")
  if ((seconds == 0)); then say "replaying the corpus of $t"; else say "fuzzing $t for ${seconds}s"; fi
  log=$(mktemp)
  # -rss_limit_mb / -malloc_limit_mb: a run past 2 GiB resident, or one allocation over
  # 512 MiB, is reported as a failure (out-of-memory) with the input that caused it.
  # -timeout: an input taking over 30 s is a hang.
  # shellcheck disable=SC2086
  if cargo +nightly fuzz run -s "$sanitizer" --target-dir "$target_dir" "$t" \
    "corpus/$t" "${seeds[@]}" -- \
    "${duration[@]}" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=30 \
    -max_len="$(max_len_of "$t")" -print_final_stats=1 ${SHARDLINE_FUZZ_ARGS:-} \
    >"$log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb):' "$log" |
      sed 's/^stat::/   /' || true
    grep -E '^#[0-9]+ +DONE' "$log" | tail -1 || true
  else
    failed+=("$t")
    # The failure: the panic or limit, and where libFuzzer saved the input.
    grep -avE '^\s+[0-9]+: |^\s+at |^#[0-9]+ ' "$log" | tail -40
    artifact=$(grep -aoE "Test unit written to \S+" "$log" | tail -1 | cut -d' ' -f5 || true)
    echo
    echo "FAILED: $t${artifact:+; input saved in $artifact}"
    [[ -n $artifact ]] && echo "  replay: cd fuzz && SHARDLINE_FUZZ_TARGET=$target_dir" \
      "cargo +nightly fuzz run -s $sanitizer --target-dir $target_dir $t $artifact"
  fi
  rm -f "$log"
done

say "fuzzing took $((SECONDS - started))s in total"
if ((${#failed[@]})); then
  echo "fuzz targets that failed: ${failed[*]}" >&2
  exit 1
fi
