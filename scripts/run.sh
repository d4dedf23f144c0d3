#!/usr/bin/env bash
# Foreground run of the whole service: stack, migrations, topics, then api + worker +
# scheduler. Ctrl-C (or SIGTERM) stops the three processes gracefully, then the stack.
# KEEP_STACK=1 leaves the stack running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/local/stack.sh up
eval "$(bash infra/local/stack.sh env)"
# Local runs keep their telemetry in files an SRE can evaluate and render offline.
export QIS_TELEMETRY__TRACES_EXPORTER="${QIS_TELEMETRY__TRACES_EXPORTER:-file}"
export QIS_TELEMETRY__METRICS_EXPORTER="${QIS_TELEMETRY__METRICS_EXPORTER:-file}"
.venv/bin/qis db migrate
.venv/bin/qis kafka topics

pids=()
stop() {
  trap - INT TERM
  [[ -z "${stopped:-}" ]] || return 0
  stopped=1
  echo "run: stopping api, worker, scheduler..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_STACK:-0}" != 1 ]]; then bash infra/local/stack.sh down; fi
  echo "run: stopped" >&2
}
trap stop INT TERM

.venv/bin/qis api & pids+=($!)
.venv/bin/qis worker & pids+=($!)
.venv/bin/qis scheduler & pids+=($!)
echo "run: api on http://${QIS_API__HOST:-127.0.0.1}:${QIS_API__PORT:-8000} (pids ${pids[*]}); Ctrl-C stops" >&2
# Wait until one child exits (or a signal arrives); then stop the rest.
wait -n "${pids[@]}" || true
stop
