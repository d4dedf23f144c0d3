"""Authentication cost per request, in CPU time, of the api's ASGI app driven in-process.

    .venv/bin/python -m benchmarks.e2e.auth_cost [--requests 4000] [--rounds 3]

As `benchmarks.e2e.telemetry_cost` (whose request driver it uses): no HTTP server, no
load generator, telemetry off; each mode in its own child process, the modes alternating
round by round, each figure the median round. Modes:

- `off`: `QIS_AUTH__ENABLED=false`;
- `verify`: authentication on (a bearer token checked per request, remembered after its
  first check; the scope), rate limiting off;
- `on`: as production: authentication and the client's Redis token bucket (one script
  per request; limits so high it never refuses).

Request kinds: a cached latest read (L1 hit) with a token, and `GET /health/live` (open:
no token, the control). `time.process_time` counts the api's CPU only (not Redis's).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from benchmarks.e2e.processes import auth_settings, bench_token, env, telemetry_settings
from benchmarks.e2e.telemetry_cost import _measure, _request, median_table, run_child

SERIES = 500
MODES = {"off": (False, False), "verify": (True, False), "on": (True, True)}
KINDS = ("latest_read", "health_live")


def with_token(app: Any, token: str) -> Any:
    """`app` with `Authorization: Bearer <token>` added to every request."""
    header = (b"authorization", f"Bearer {token}".encode())

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["headers"] = [*scope["headers"], header]
        await app(scope, receive, send)

    return wrapped


async def _child(requests: int) -> dict[str, float]:
    import os

    from app.entrypoints.api import create_app
    from app.settings import load_settings
    from app.telemetry.logging import configure_logging
    from benchmarks.e2e.query_bench import PREFIX, SNAP_TEXT, seed

    settings = load_settings(os.environ)
    configure_logging("ERROR")
    app = create_app(settings)
    client = with_token(app, bench_token("qis/read"))
    await seed(settings.db.writer_dsn)
    paths = [
        f"/v1/reference-data/{PREFIX}{i:05d}/official-values/{SNAP_TEXT}" for i in range(SERIES)
    ]
    results: dict[str, float] = {}
    async with app.lifespan():
        for path in paths:  # warm L1 (and the token's first check)
            await _request(client, "GET", path)
        for _ in range(50):
            await _request(client, "GET", "/health/live")
        results["latest_read"] = await _measure(
            requests, lambda i: _request(client, "GET", paths[i % SERIES])
        )
        results["health_live"] = await _measure(
            requests, lambda i: _request(app, "GET", "/health/live")
        )
    return results


def _run_child(mode: str, requests: int) -> dict[str, float]:
    auth, limit = MODES[mode]
    environment = env(**telemetry_settings(False, "auth-cost"), **auth_settings(auth, limit))
    return run_child("benchmarks.e2e.auth_cost", mode, requests, environment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            runs[mode].append(_run_child(mode, args.requests))
    table = median_table(runs, KINDS)
    print(f"CPU µs per request, median of {args.rounds} rounds ({args.requests} requests each)")
    print(f"{'request':<14}" + "".join(f"{mode:>10}" for mode in MODES))
    for kind, row in table.items():
        print(f"{kind:<14}" + "".join(f"{row[mode]:>10.1f}" for mode in MODES))
    print(json.dumps({"median": table, "rounds": runs}))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "child":
        import uvloop

        print("RESULT " + json.dumps(uvloop.run(_child(int(sys.argv[2])))))
    else:
        main()
