#!/usr/bin/env bash
# deploy/podman.sh ARGS... — podman as it works on this project's machines: the runc runtime
# and deploy/podman/containers.conf (see there why). Installs podman, buildah and runc first
# (deploy/tools.sh containers).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$HERE/tools.sh" containers >/dev/null
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/podman/containers.conf}
exec podman --runtime runc "$@"
