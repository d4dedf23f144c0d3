#!/usr/bin/env bash
# Deploy one stack of one environment with its parameter file, plus overrides:
#
#   infra/cloudformation/deploy.sh ENV STACK [Key=Value ...]
#   infra/cloudformation/deploy.sh staging cluster ApiAccessCidrs=203.0.113.0/24
#
# Stack name qis-ENV-STACK, template STACK.yaml, parameters parameters/ENV/STACK.params
# (Key=Value lines; '#' comments). Order and the values each stack needs: docs/deploy.md.
set -euo pipefail
cd "$(dirname "$0")"

[[ $# -ge 2 ]] || { echo "usage: $0 staging|prod STACK [Key=Value ...]" >&2; exit 2; }
env=$1 stack=$2
shift 2
[[ -f $stack.yaml ]] || { echo "deploy.sh: no template $stack.yaml" >&2; exit 2; }
params=parameters/$env/$stack.params
[[ -f $params ]] || { echo "deploy.sh: no parameter file $params" >&2; exit 2; }

mapfile -t overrides < <(grep -v '^[[:space:]]*\(#\|$\)' "$params")
overrides+=("$@")

aws cloudformation deploy \
  --stack-name "qis-$env-$stack" \
  --template-file "$stack.yaml" \
  --parameter-overrides "${overrides[@]}" \
  --capabilities CAPABILITY_NAMED_IAM \
  --tags Application=qis "Environment=$env" \
  --no-fail-on-empty-changeset
