#!/usr/bin/env bash
# `make lint`'s chart checks: helm lint, then every rendered manifest validated against
# the EKS cluster's Kubernetes version (cluster.yaml KubernetesVersion) with unknown
# fields rejected, for staging and prod. Needs infra/lint/.venv (make lint syncs it).
#
#   infra/helm/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

KUBE_VERSION=1.33.0   # a version kubernetes-validate bundles schemas for (1.25 - 1.37)
CHART=infra/helm/qis
EXAMPLE=infra/helm/ci/example-values.yaml
VALIDATE=infra/lint/.venv/bin/kubernetes-validate
HELM=$(bash infra/tools.sh helm)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The validator must reject a known-bad manifest, or its passes below mean nothing.
if "$VALIDATE" --strict -k "$KUBE_VERSION" --quiet infra/helm/ci/bad-manifest.yaml >/dev/null 2>&1; then
  echo "check.sh: kubernetes-validate accepted infra/helm/ci/bad-manifest.yaml" >&2
  exit 1
fi

for env in staging prod; do
  values=(-f "$CHART/values-$env.yaml" -f "$EXAMPLE")
  "$HELM" lint --strict --quiet --kube-version "$KUBE_VERSION" "$CHART" "${values[@]}"
  "$HELM" template qis "$CHART" --namespace qis --kube-version "$KUBE_VERSION" "${values[@]}" \
    > "$out/$env.yaml"
  count=$(grep -c '^kind:' "$out/$env.yaml" || true)
  if [[ $count -lt 10 ]]; then
    echo "check.sh: $env rendered only $count manifests" >&2
    exit 1
  fi
  # KEDA's ScaledObject/TriggerAuthentication have no bundled schema: reported as
  # warnings (--no-warn hides them); tests/unit/test_manifests.py checks their fields.
  "$VALIDATE" --strict -k "$KUBE_VERSION" --quiet --no-warn "$out/$env.yaml"
  echo "helm chart ($env): helm lint clean, $count manifests valid for Kubernetes $KUBE_VERSION"
done
