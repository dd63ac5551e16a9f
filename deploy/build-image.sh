#!/usr/bin/env bash
# deploy/build-image.sh [--fast] [--tag IMAGE] — builds the Shardline container image with
# podman from deploy/Containerfile: the release binary (stripped) and exactly the shared
# libraries `ldd` lists for it, on `scratch`. Prints the image's name and size.
#
#   --fast       the release profile without LTO and with 16 codegen units: a shorter build
#                than fat LTO's (~14 min cold on a quiet machine), for a binary that uses
#                ~2 MiB more memory idle (README.md). For test images; ship images without it.
#   --tag IMAGE  default localhost/shardline:dev ($SHARDLINE_IMAGE)
#   SHARDLINE_IMAGE_BINARY=PATH  put this binary in instead of building one
#
# The binary is linked against glibc; its libraries (3.1 MB) come from the building machine
# (Debian 12), so the image runs on any x86-64 Linux kernel. A static musl build (aws-lc and
# jemalloc built with a musl C toolchain) was not tried.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

image=${SHARDLINE_IMAGE:-localhost/shardline:dev}
fast=0
while (($#)); do
  case $1 in
    --fast) fast=1 ;;
    --tag) image=$2; shift ;;
    *) echo "usage: deploy/build-image.sh [--fast] [--tag IMAGE]" >&2; exit 2 ;;
  esac
  shift
done

target=${CARGO_TARGET_DIR:-target}
bin=${SHARDLINE_IMAGE_BINARY:-}
if [[ -z $bin ]]; then
  if ((fast)); then
    export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
  fi
  echo "==> cargo build --release -p shardline$( ((fast)) && echo ' (no LTO, 16 codegen units)')" >&2
  cargo build --release --locked -p shardline >&2
  bin=$target/release/shardline
fi

ctx=$target/image-context
rm -rf "$ctx"
root=$ctx/rootfs
# rootfs/ is root's (read-only to the user); cache/ becomes /var/cache/shardline, the user's.
mkdir -p "$root"/usr/local/bin "$root"/etc/ssl/certs "$root"/etc/shardline/components \
  "$ctx"/cache/components
strip --strip-all -o "$root/usr/local/bin/shardline" "$bin"

# Exactly what the dynamic loader will open: every `=> /path` of ldd, and the loader itself.
libs=$({ ldd "$bin" || true; } | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# TLS to AWS and Pulsar: the SDK's rustls reads the system's roots.
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/nonexistent\nshardline:x:10001:10001:shardline:/var/cache/shardline:/nonexistent\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nshardline:x:10001:\n' >"$root/etc/group"
cp deploy/Containerfile "$ctx/Containerfile"

version=$(git describe --always --dirty 2>/dev/null || echo unknown)
echo "==> podman build $image (libraries: $(echo $libs | tr '\n' ' '))" >&2
deploy/podman.sh build --quiet --squash-all \
  --label org.opencontainers.image.title=shardline \
  --label org.opencontainers.image.revision="$version" \
  --label org.opencontainers.image.description="Kinesis -> WebAssembly -> Pulsar/Kinesis, KCL-compatible leases" \
  -t "$image" -f "$ctx/Containerfile" "$ctx" >&2
size=$(deploy/podman.sh image inspect --format '{{.Size}}' "$image")
echo "$image $size bytes ($(( (size + 524288) / 1048576 )) MiB)"
