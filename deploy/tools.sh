#!/usr/bin/env bash
# deploy/tools.sh — installs the pinned tools of the deployment checks and prints the
# directory that holds them (source it with `PATH="$(deploy/tools.sh):$PATH"`).
#
#   podman, buildah, runc   Debian packages (images are built and run offline, rootful)
#   helm                    helm.sh/helm/v3, built by `go install` (the Go module proxy)
#   kube-validate           deploy/kube-validate: rendered manifests decoded strictly into
#                           the Kubernetes API types (k8s.io/api) — see that folder
#   iam-recorder            deploy/iam/recorder: the IAM coverage check's relay and check
#
# Each Go tool is built into ~/.cache/shardline/deploy-tools/<tool>-<version>/ with a marker
# written last, so a half-done build is redone and a finished one costs nothing.
# Arguments choose what to install: `containers`, `helm`, `kube-validate`, `iam-recorder`
# (default: all).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SHARDLINE_TOOLS_CACHE:-${HOME:?HOME must be set}/.cache/shardline}/deploy-tools
BIN=$CACHE/bin
mkdir -p "$BIN"

HELM_VERSION=v3.21.4

want=("$@")
((${#want[@]})) || want=(containers helm kube-validate iam-recorder)

log() { printf '==> %s\n' "$*" >&2; }

containers() {
  local need=()
  command -v podman >/dev/null || need+=(podman)
  command -v buildah >/dev/null || need+=(buildah)
  command -v runc >/dev/null || need+=(runc)
  # uidmap and slirp are podman's recommends; --network host and rootful runs need neither.
  if ((${#need[@]})); then
    log "installing Debian packages: ${need[*]}"
    local sudo=; [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${need[@]}" >/dev/null
  fi
}

# go_tool NAME VERSION DIR-OR-PACKAGE: builds once into $CACHE/NAME-VERSION, links into $BIN.
go_tool() {
  local name=$1 version=$2 what=$3 dir=$CACHE/$1-$2
  if [[ ! -f $dir/.complete ]]; then
    log "building $name $version (go; first time only): $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    if [[ -d $what ]]; then
      (cd "$what" && GOFLAGS=-mod=readonly go build -trimpath -o "$dir/$name" .)
    else
      GOBIN=$dir go install -trimpath "$what@$version"
    fi
    touch "$dir/.complete"
  fi
  ln -sf "$dir/$name" "$BIN/$name"
}

# local_tool NAME DIR: a Go program of this repository, rebuilt when its source changes (the
# version is a hash of its files).
local_tool() {
  local v
  v=$(cat "$2"/go.mod "$2"/*.go $( [[ -f $2/go.sum ]] && echo "$2/go.sum") | sha256sum | cut -c1-12)
  go_tool "$1" "$v" "$2"
}

for w in "${want[@]}"; do
  case $w in
    containers) containers ;;
    helm) go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm ;;
    kube-validate) local_tool kube-validate "$HERE/kube-validate" ;;
    iam-recorder) local_tool shardline-iam-recorder "$HERE/iam/recorder" ;;
    *) echo "deploy/tools.sh: unknown tool $w" >&2; exit 2 ;;
  esac
done
echo "$BIN"
