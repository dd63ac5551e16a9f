#!/usr/bin/env bash
# deploy/helm/check.sh — the chart's checks, offline: `helm lint --strict` and
# `helm template` with the default values and with every option on (ci/*-values.yaml), each
# rendering validated against the Kubernetes API types (deploy/kube-validate), plus what the
# chart derives: the grace period from the drain time, the config the worker reads.
# Installs helm and kube-validate on first use (deploy/tools.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=$(deploy/tools.sh helm kube-validate | tail -1)
helm=$bin/helm
chart=deploy/helm/shardline
# The Kubernetes release whose API types kube-validate holds (k8s.io/api v0.37.2).
KUBE_VERSION=1.37.0
out=${CARGO_TARGET_DIR:-target}/helm
rm -rf "$out"
mkdir -p "$out"
# helm keeps its own state under these; nothing of the user's is read.
export HELM_CACHE_HOME=$out/.cache HELM_CONFIG_HOME=$out/.config HELM_DATA_HOME=$out/.data

step() { printf '==> %s\n' "$*"; }
fail() { echo "helm/check.sh: $*" >&2; exit 1; }

render() { # NAME [helm args...]
  local name=$1; shift
  step "helm lint --strict ($name)"
  "$helm" lint --strict "$chart" "$@"
  step "helm template ($name) | kube-validate"
  "$helm" template shardline "$chart" --namespace streaming --kube-version "$KUBE_VERSION" "$@" >"$out/$name.yaml"
  "$bin/kube-validate" "$out/$name.yaml"
}

render default
for v in "$chart"/ci/*-values.yaml; do
  render "$(basename "$v" -values.yaml)" -f "$v"
done

step "derived values"
# Default: Pulsar send_timeout 30 s + 5 s drain + 15 s margin; a 500ms send_timeout: 1 + 5 + 15;
# no Pulsar sink (a Kinesis sink drains by its record TTL): 30 + 5 + 15.
grep -q "terminationGracePeriodSeconds: 21$" "$out/initcontainer.yaml" || fail "initcontainer grace period is not 21 s"
grep -q "terminationGracePeriodSeconds: 50$" "$out/files.yaml" || fail "files grace period is not 50 s"
grep -q 'terminationGracePeriodSeconds: 50$' "$out/default.yaml" || fail "default grace period is not 50 s"
# Full: send_timeout 45 s + 5 + 20.
grep -q 'terminationGracePeriodSeconds: 70$' "$out/full.yaml" || fail "full grace period is not 70 s"
grep -q 'eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/orders-shardline"' "$out/full.yaml" ||
  fail "no IRSA annotation"
grep -q 'kind: ServiceMonitor' "$out/full.yaml" || fail "no ServiceMonitor"
if grep -q 'kind: ServiceMonitor' "$out/default.yaml"; then fail "ServiceMonitor without its option"; fi
"$helm" template shardline "$chart" --kube-version "$KUBE_VERSION" --set config.application= --set exampleConfig.application= >/dev/null 2>&1 &&
  fail "a config without application rendered"
"$helm" template shardline "$chart" --kube-version "$KUBE_VERSION" --set 'exampleConfig.sinks.pulsar.pulsar.send_timeout=1h' >/dev/null 2>&1 &&
  fail "an unreadable duration rendered"

# The validator is not vacuous: a misspelt field and a wrong type fail it.
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesytem: true/' "$out/default.yaml" >"$out/typo.yaml"
sed 's/containerPort: 9464/containerPort: "9464"/' "$out/default.yaml" >"$out/type.yaml"
for bad in typo type; do
  if "$bin/kube-validate" "$out/$bad.yaml" >/dev/null; then fail "kube-validate accepted $bad.yaml"; fi
done

# The config the worker reads must be one it accepts: each rendering's config.yaml through
# `shardline validate`, its `stages` left out (the components are not here), when a binary
# is at hand.
shardline=${SHARDLINE_BIN:-${CARGO_TARGET_DIR:-target}/debug/shardline}
if [[ -x $shardline ]]; then
  for r in "$out"/*.yaml; do
    name=$(basename "$r" .yaml)
    [[ $name == typo || $name == type ]] && continue
    step "shardline validate: the config of the $name rendering ($shardline)"
    python3 - "$r" "$out/$name.config" <<'PY'
import sys
text = open(sys.argv[1]).read()
doc = next(d for d in text.split("\n---\n") if "kind: ConfigMap" in d and "config.yaml: |" in d)
lines = []
for line in doc.split("config.yaml: |\n", 1)[1].splitlines():
    if line.strip() and not line.startswith("    "):
        break
    lines.append(line[4:])
out, skip = [], False
for line in lines:
    if line.startswith("stages:"):
        skip = True
        continue
    if skip and (line.startswith(" ") or not line.strip()):
        continue
    skip = False
    out.append(line)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
    "$shardline" validate --config "$out/$name.config" >/dev/null
  done
else
  step "shardline validate skipped: no binary at $shardline (SHARDLINE_BIN)"
fi
step "chart checks passed"
