"""Telemetry cost per request, in CPU time, of the api's ASGI app driven in-process.

    .venv/bin/python -m benchmarks.e2e.telemetry_cost [--requests 4000] [--rounds 3]

Deterministic where the wrk/HTTP benchmarks are not on a shared 2-core machine: no HTTP
server, no load generator, only the application (and, for the POSTs, aiokafka talking
to the local broker). Each mode runs in its own child process (the OpenTelemetry global
providers and the library instrumentations are per process), the modes alternate
round by round, and each kind's figure is the median round:

- `off`: `QIS_TELEMETRY__ENABLED=false`;
- `on`: the default sampling rates, spans to a JSON-lines file, EMF metrics to a file
  (every 10 s, so exports happen during the run), as `benchmarks/e2e/ingestion.py` runs it;
- `unsampled`: `on` with every sampling rate 0: the cost of an untraced request;
- `sampled`: `on` with every sampling rate 1: the cost of a traced request.

The table gives each mode's µs per request and, for the last two, what they add to `off`.

Request kinds: a cached latest read (L1 hit), `GET /health/live`, the bare framework
route `GET /bench/bare`, a 1-observation and a 100-observation `POST /v1/observations`
(8 concurrent requests, broker ack awaited). `time.process_time` counts every thread of
the process, so span and metric exporters are included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from benchmarks.e2e.processes import env, telemetry_settings

SERIES = 500
CONCURRENCY = 8
KINDS = ("latest_read", "health_live", "bare", "post_1", "post_100")
MODES = ("off", "on", "unsampled", "sampled")
_RATES = ("INGESTION", "QUERY", "HEALTH", "DEFAULT")


def mode_settings(mode: str) -> dict[str, str]:
    """The QIS_TELEMETRY__* settings of a mode (see the module docstring)."""
    settings = telemetry_settings(mode != "off", "cost")
    if mode in ("unsampled", "sampled"):
        rate = "0" if mode == "unsampled" else "1"
        settings |= {f"QIS_TELEMETRY__SAMPLE_RATE_{route}": rate for route in _RATES}
    return settings


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _request(app: Any, method: str, path: str, body: bytes = b"") -> int:
    headers = [(b"accept", b"*/*")]
    if body:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    scope = _scope(method, path, headers)
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # a disconnect never comes
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _bodies(prefix: str, per_request: int, count: int) -> list[bytes]:
    from benchmarks.e2e.ingestion import bodies

    return bodies(prefix, per_request, count)


async def _measure(
    requests: int, make: Callable[[int], Awaitable[int]], concurrency: int = 1
) -> float:
    """CPU microseconds per request over `requests` requests (`concurrency` at a time)."""
    statuses: list[int] = []

    async def lane(lane_index: int) -> None:
        for i in range(lane_index, requests, concurrency):
            statuses.append(await make(i))

    started = time.process_time()
    await asyncio.gather(*(lane(k) for k in range(concurrency)))
    elapsed = time.process_time() - started
    bad = [s for s in statuses if s >= 300]
    if bad:
        raise SystemExit(f"unexpected statuses: {sorted(set(bad))}")
    return elapsed / requests * 1e6


async def _child(requests: int) -> dict[str, float]:
    from app.entrypoints.api import create_app
    from app.settings import load_settings
    from app.telemetry.logging import configure_logging
    from app.telemetry.setup import setup_telemetry
    from benchmarks.e2e.query_bench import PREFIX, SNAP_TEXT, seed
    from benchmarks.e2e.serve import bench_bare

    settings = load_settings(os.environ)
    configure_logging("WARNING")
    telemetry = setup_telemetry(settings.telemetry, "api")
    app = create_app(settings, telemetry)
    app.register(bench_bare)
    await seed(settings.db.writer_dsn)
    tag = uuid.uuid4().hex[:6].upper()
    singles = _bodies(f"COST-{tag}-S", 1, requests)
    batches = _bodies(f"COST-{tag}-B", 100, max(requests // 10, 50))
    paths = [
        f"/v1/reference-data/{PREFIX}{i:05d}/official-values/{SNAP_TEXT}" for i in range(SERIES)
    ]
    results: dict[str, float] = {}
    try:
        async with app.lifespan():
            for path in paths:  # warm L1
                await _request(app, "GET", path)
            # warm-up of every route (first-call costs, connection set-up)
            for i in range(50):
                await _request(app, "GET", paths[i])
                await _request(app, "GET", "/health/live")
                await _request(app, "GET", "/bench/bare")
            await asyncio.gather(
                *(_request(app, "POST", "/v1/observations", singles[-1 - i]) for i in range(20))
            )
            results["latest_read"] = await _measure(
                requests, lambda i: _request(app, "GET", paths[i % SERIES])
            )
            results["health_live"] = await _measure(
                requests, lambda i: _request(app, "GET", "/health/live")
            )
            results["bare"] = await _measure(
                requests, lambda i: _request(app, "GET", "/bench/bare")
            )
            posts = requests - 20
            results["post_1"] = await _measure(
                posts,
                lambda i: _request(app, "POST", "/v1/observations", singles[i]),
                CONCURRENCY,
            )
            results["post_100"] = await _measure(
                len(batches),
                lambda i: _request(app, "POST", "/v1/observations", batches[i]),
                CONCURRENCY,
            )
    finally:
        telemetry.shutdown()
    return results


def run_child(
    module: str, label: str, requests: int, environment: dict[str, str]
) -> dict[str, float]:
    """`python -m <module> child <requests>` in `environment`: the figures of its RESULT
    line (each mode measured in a process of its own)."""
    done = subprocess.run(
        [sys.executable, "-m", module, "child", str(requests)],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{label} child failed:\n{done.stderr[-4000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    return result


def median_table(
    runs: dict[str, list[dict[str, float]]], kinds: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per request kind and mode, the median of the rounds (µs, one decimal)."""
    return {
        kind: {
            mode: round(statistics.median(r[kind] for r in rounds), 1)
            for mode, rounds in runs.items()
        }
        for kind in kinds
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-stack", action="store_true", help="the stack is already up")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, with off")
    args = parser.parse_args()
    from benchmarks.e2e.processes import (
        create_topics,
        database_settings,
        own_database,
        own_topic_and_group,
        prepare_stack,
    )

    if not args.no_stack:
        prepare_stack()
    # A database and topic of its own: the POSTs (~45,000 observations per child) must not
    # become a backlog for the `qis worker`s of tests or `make run` on the shared topic.
    dsn = asyncio.run(own_database("qis_telemetry_cost", fresh=True))
    isolation = {
        **own_topic_and_group("COST" + uuid.uuid4().hex[:6].upper()),
        **database_settings(dsn),
    }
    create_topics(isolation)
    modes = [m for m in args.modes.split(",") if m]
    if "off" not in modes or set(modes) - set(MODES):
        raise SystemExit(f"--modes: 'off' and any of {MODES}")
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            environment = env(**mode_settings(mode), **isolation)
            runs[mode].append(
                run_child("benchmarks.e2e.telemetry_cost", mode, args.requests, environment)
            )
    table = median_table(runs, KINDS)
    print(f"CPU µs per request, median of {args.rounds} rounds ({args.requests} requests each)")
    print(
        f"{'request':<14}"
        + "".join(f"{m:>11}" for m in modes)
        + "  added: "
        + ", ".join(m for m in modes if m != "off")
    )
    for kind, row in table.items():
        added = ", ".join(f"{row[m] - row['off']:+.1f}" for m in modes if m != "off")
        print(f"{kind:<14}" + "".join(f"{row[m]:>11.1f}" for m in modes) + f"  {added}")
    print(json.dumps({"median": table, "rounds": runs}))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "child":
        import uvloop

        print("RESULT " + json.dumps(uvloop.run(_child(int(sys.argv[2])))))
    else:
        main()
