"""Instructions an untraced request adds, counted by valgrind: the telemetry-cost figure
that a shared, noisy machine does not move.

    .venv/bin/python -m benchmarks.e2e.telemetry_instructions [--requests 2000] [--no-stack]

Needs `valgrind` and a C compiler (Debian packages `valgrind`, `gcc`); the in-app cases
need the local stack, as `telemetry_cost` does. Each case runs in a child process under
`valgrind --tool=callgrind`, counting instructions only around the measured loop (a
three-line C shim issues `CALLGRIND_TOGGLE_COLLECT`), so start-up, imports and
connection set-up do not count:

- `middleware`: `TracedRequests` (every sampling rate 0, no exporter) around a trivial
  ASGI app that sends a response start and a body, against the trivial app alone;
- `bare` and `latest_read`: the api app in-process (as `telemetry_cost` drives it), the
  bare framework route and a cached latest read (L1 hit), telemetry `off` against
  `unsampled` (telemetry on, every sampling rate 0, exporters as in production).

Instructions are not time: each variant is also run natively (no valgrind, min of 15
windows of 1,000 requests), and the added microseconds are given at the telemetry
variant's own instructions per microsecond. Instruction counts repeat to within about 0.1 %
from run to run; the microsecond conversion inherits the machine's noise.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.e2e.processes import env, prepare_stack
from benchmarks.e2e.telemetry_cost import _request, mode_settings

SHIM = """#include <valgrind/callgrind.h>
void qis_toggle_collect(void) { CALLGRIND_TOGGLE_COLLECT; }
"""
MODULE = "benchmarks.e2e.telemetry_instructions"
WARMUP = 300
WINDOWS, WINDOW = 15, 1000


async def _trivial(scope: Any, receive: Any, send: Any) -> None:
    scope["path_template"] = "/bench/bare"
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x", b"y")]}
    await send(start)
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _discard(_: Any) -> None:
    return None


def _scope() -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    return {"type": "http", "method": "GET", "path": "/bench/bare", "headers": headers}


def _middleware_app(wrapped: bool) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    from app.settings import TelemetrySettings
    from app.telemetry.distributions import Distributions
    from app.telemetry.http import TracedRequests
    from app.telemetry.metrics import QisMetrics
    from app.telemetry.tracing import build_tracer_provider

    if not wrapped:
        return _trivial
    rates = ("ingestion", "query", "health", "default")
    settings = TelemetrySettings(enabled=True, **{f"sample_rate_{r}": 0.0 for r in rates})
    provider = build_tracer_provider(settings, Resource.create({}))
    distributions = Distributions()
    meter = MeterProvider().get_meter("qis")
    return TracedRequests(_trivial, provider, QisMetrics(meter, "api", distributions=distributions))


async def _child(case: str, variant: str, requests: int, shim: str | None) -> float:
    """Runs `requests` requests of `case` (after a warm-up), counted by callgrind when
    `shim` is given; returns µs per request (min of windows) when run natively."""
    toggle = ctypes.CDLL(shim).qis_toggle_collect if shim else None
    if case == "middleware":
        app = _middleware_app(variant == "wrapped")

        async def one() -> None:
            await app(_scope(), _receive, _discard)

        return await _loop(one, requests, toggle)

    from app.entrypoints.api import create_app
    from app.settings import load_settings
    from app.telemetry.logging import configure_logging
    from app.telemetry.setup import setup_telemetry
    from benchmarks.e2e.query_bench import PREFIX, SNAP_TEXT, seed
    from benchmarks.e2e.serve import bench_bare

    settings = load_settings(os.environ)
    configure_logging("WARNING")
    telemetry = setup_telemetry(settings.telemetry, "api")
    api = create_app(settings, telemetry)
    api.register(bench_bare)
    paths = [f"/v1/reference-data/{PREFIX}{i:05d}/official-values/{SNAP_TEXT}" for i in range(50)]
    if case == "latest_read":
        await seed(settings.db.writer_dsn)
    counter = itertools.count()

    async def request() -> None:
        path = paths[next(counter) % 50] if case == "latest_read" else "/bench/bare"
        if await _request(api, "GET", path) != 200:
            raise SystemExit(f"{case}: {path} did not answer 200")

    try:
        async with api.lifespan():
            return await _loop(request, requests, toggle)
    finally:
        telemetry.shutdown()


async def _loop(one: Any, requests: int, toggle: Any) -> float:
    for _ in range(WARMUP):
        await one()
    if toggle is not None:
        toggle()
        for _ in range(requests):
            await one()
        toggle()
        return 0.0
    best = float("inf")
    for _ in range(WINDOWS):
        started = time.process_time()
        for _ in range(WINDOW):
            await one()
        best = min(best, (time.process_time() - started) / WINDOW * 1e6)
    return best


def _environment(case: str, variant: str) -> dict[str, str]:
    environment = env() | {"PYTHONHASHSEED": "0"}
    if case != "middleware":
        # exports every hour: under valgrind a 10 s period would come every few requests
        environment |= mode_settings(variant)
        environment["QIS_TELEMETRY__METRICS_INTERVAL_SECONDS"] = "3600"
    return environment


def _run(case: str, variant: str, requests: int, shim: str | None) -> float:
    command = [sys.executable, "-m", MODULE, "child", case, variant, str(requests), shim or ""]
    if shim:
        command = ["valgrind", "--tool=callgrind", "--collect-atstart=no"]
        command += ["--callgrind-out-file=/dev/null", sys.executable, "-m", MODULE]
        command += ["child", case, variant, str(requests), shim]
    done = subprocess.run(
        command, env=_environment(case, variant), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{case}/{variant} failed:\n{done.stderr[-3000:]}")
    if shim:
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"{case}/{variant}: no callgrind total:\n{done.stderr[-2000:]}")
        return int(found.group(1)) / requests
    return float(done.stdout.strip().splitlines()[-1])


CASES = {
    "middleware": ("bare", "wrapped"),
    "bare": ("off", "unsampled"),
    "latest_read": ("off", "unsampled"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--no-stack", action="store_true", help="the stack is already up")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("cc") is None:
        raise SystemExit("needs valgrind and a C compiler (apt-get install valgrind gcc)")
    cases = args.cases.split(",")
    if not args.no_stack and cases != ["middleware"]:
        prepare_stack()
    with tempfile.TemporaryDirectory() as directory:
        shim = str(Path(directory) / "toggle.so")
        (Path(directory) / "toggle.c").write_text(SHIM)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", shim, f"{directory}/toggle.c"])
        results: dict[str, Any] = {}
        print("case          instructions/request: base -> with telemetry (+added)   µs")
        for case in cases:
            base, telemetry = CASES[case]
            counted = {v: _run(case, v, args.requests, shim) for v in (base, telemetry)}
            native = {v: _run(case, v, 0, None) for v in (base, telemetry)}
            added = counted[telemetry] - counted[base]
            # at the telemetry variant's own rate: around the trivial app the base's
            # tight loop runs at a rate no real request reaches
            per_us = counted[telemetry] / native[telemetry]
            results[case] = {
                "instructions": {k: round(v) for k, v in counted.items()},
                "added_instructions": round(added),
                "native_us": {k: round(v, 2) for k, v in native.items()},
                "instructions_per_us": round(per_us),
                "added_us": round(added / per_us, 2),
            }
            print(
                f"{case:13} {counted[base]:>10,.0f} -> {counted[telemetry]:>10,.0f}"
                f" (+{added:,.0f}, {added / counted[base]:.1%})"
                f"   {native[base]:.1f} -> {native[telemetry]:.1f} µs natively,"
                f" +{added / per_us:.2f} µs at {per_us:,.0f} instructions/µs"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        _, _, case, variant, count, shim_path = sys.argv
        print(asyncio.run(_child(case, variant, int(count), shim_path or None)))
    else:
        main()
