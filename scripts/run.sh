#!/usr/bin/env bash
# Foreground run of the whole service: stack, migrations, topics, then the local token
# issuer (`qis dev issuer`, its key and app clients kept in .local/auth) + api + worker +
# scheduler under scripts/supervise.py, which restarts a child that exits (backoff 1 s
# doubling to 30 s, reset after 60 s up; each restart logged and counted). Ctrl-C (or
# SIGTERM) stops the three processes gracefully (SIGKILL after SUPERVISE_GRACE seconds,
# default 30), prints the restart counts, then stops the stack.
# KEEP_STACK=1 leaves the stack running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/local/stack.sh up
eval "$(bash infra/local/stack.sh env)"
# Local runs keep their telemetry in files an SRE can evaluate and render offline.
export QIS_TELEMETRY__TRACES_EXPORTER="${QIS_TELEMETRY__TRACES_EXPORTER:-file}"
export QIS_TELEMETRY__METRICS_EXPORTER="${QIS_TELEMETRY__METRICS_EXPORTER:-file}"
# The downstream copies the stack serves locally (EventBridge -> SQS and Timestream, on
# its moto server): on in a local run, off by default elsewhere (docs/sinks.md).
export QIS_EVENTBRIDGE__ENABLED="${QIS_EVENTBRIDGE__ENABLED:-true}"
export QIS_TIMESTREAM__ENABLED="${QIS_TIMESTREAM__ENABLED:-true}"
# The local token issuer the api checks tokens against (STACK_ISSUER_PORT moves it).
issuer_port="${STACK_ISSUER_PORT:-58080}"
export QIS_AUTH__ISSUER="${QIS_AUTH__ISSUER:-http://127.0.0.1:$issuer_port}"
.venv/bin/qis db migrate
.venv/bin/qis kafka topics
.venv/bin/qis lake buckets
# The local event bus, its rules and their SQS queues (used when QIS_EVENTBRIDGE__ENABLED).
.venv/bin/qis events setup
.venv/bin/qis timestream setup

.venv/bin/python scripts/supervise.py --grace "${SUPERVISE_GRACE:-30}" \
  --child "issuer=.venv/bin/qis dev issuer --port $issuer_port" \
  --child "api=.venv/bin/qis api" \
  --child "worker=.venv/bin/qis worker" \
  --child "scheduler=.venv/bin/qis scheduler" &
supervisor=$!
# The supervisor handles Ctrl-C itself (it is in the terminal's process group); a SIGTERM
# sent to this script alone is passed on.
trap 'kill -TERM "$supervisor" 2>/dev/null || true' INT TERM
api="http://${QIS_API__HOST:-127.0.0.1}:${QIS_API__PORT:-8000}"
echo "run: api on $api (supervisor pid $supervisor); Ctrl-C stops" >&2
echo "run: tokens from the local issuer (clients in .local/auth/clients.json), e.g." >&2
issuer_arg=""
[[ "$QIS_AUTH__ISSUER" == "http://127.0.0.1:58080" ]] || issuer_arg=" --issuer $QIS_AUTH__ISSUER"
echo "run:   TOKEN=\$(.venv/bin/qis dev token$issuer_arg --scope qis/read --scope qis/ingest --scope qis/admin)" >&2
echo "run:   curl -H \"Authorization: Bearer \$TOKEN\" $api/v1/reference-data" >&2
status=0
# `wait` returns early when a trapped signal arrives; wait again until the supervisor is gone.
while :; do
  wait "$supervisor" && status=0 || status=$?
  kill -0 "$supervisor" 2>/dev/null || break
done
trap - INT TERM
if [[ "${KEEP_STACK:-0}" != 1 ]]; then bash infra/local/stack.sh down; fi
echo "run: stopped" >&2
exit "$status"
