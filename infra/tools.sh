#!/usr/bin/env bash
# Deployment tools that are not Python packages, built once and cached outside the
# checkout (like the local stack's Kafka jars): `infra/tools.sh helm` prints the path of a
# helm binary, building it with `go install` on the first call (about 4 minutes on two
# cores; needs Go >= 1.24 and the Go module proxy).
#
#   infra/tools.sh helm      # path of the cached helm binary (builds it if missing)
#
# Cache: $QIS_TOOLS_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/qis-tools/<tool>/<version>/.
set -euo pipefail

HELM_VERSION=v3.22.0
CACHE_ROOT=${QIS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qis-tools}

die() { echo "tools.sh: $*" >&2; exit 1; }

helm_path() {
  local dir=$CACHE_ROOT/helm/$HELM_VERSION
  local bin=$dir/helm
  if [[ ! -x $bin ]]; then
    command -v go >/dev/null 2>&1 || die "helm $HELM_VERSION is not cached and Go is not installed"
    echo "tools.sh: building helm $HELM_VERSION with go install (first run only, ~4 min)" >&2
    local tmp=$dir.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$tmp"
    # GOBIN puts the binary in the cache directly (not ~/go/bin); Go's module cache is reused.
    GOBIN=$tmp go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2 \
      || { rm -rf "$tmp"; die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"; }
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  "$bin" version --short >/dev/null || die "$bin does not run"
  echo "$bin"
}

case ${1:-} in
  helm) helm_path ;;
  *) die "usage: $0 helm" ;;
esac
