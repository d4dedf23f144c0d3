"""Query benchmark: latest official values, Zipf-skewed over 10,000 series, one API process.

    .venv/bin/python -m benchmarks.e2e.query_bench [--seconds 15] [--connections 16]
        [--telemetry off|on|both] [--auth off|on|both]

What it does, in one run:
1. seeds version 1 of one snap for 10,000 series `BENCH-Q-00000..09999` (idempotent:
   `INSERT ... SELECT generate_series ... ON CONFLICT DO NOTHING`, kept between runs);
2. starts ONE API process (`qis api`'s app and uvicorn settings, telemetry off) from
   this module's `serve` mode, which adds two benchmark-only routes: `GET /bench/bare`
   (the bare framework GET route: the ceiling) and `GET /bench/cache-stats`;
3. warms the cache by reading every series once;
4. drives each route for `--seconds` with wrk (one thread, `--connections` keep-alive
   connections, on loopback): the official-value route with paths drawn from a Zipf
   distribution (s = 1.0 over the 10,000 series, a fresh draw per request, in Lua), then
   the bare route;
5. prints requests/s and P50/P95/P99 of each, the ratio to the ceiling, and the cache
   hit ratios over the measured run (from the process' own counters).

`--telemetry both` is the telemetry-cost comparison: it starts a telemetry-off and a
telemetry-on process (production setting: the default sampling rates, spans and EMF
exported to files) side by side and alternates, round by round, the same wrk runs on
each: cached latest reads, the bare route and batch ingestion (100-observation
`POST /v1/observations`, 8 connections, broker ack awaited, to a topic of the run's own
that no worker reads). Each round prints off / on / ratio; the summary keeps the best
round of each process (noise on a shared machine only slows a round down) and the
median round.

`--auth on` serves the reads authenticated as in production (a bearer token checked per
request, qis/read, the client's Redis token bucket taken); `--auth both` starts an
auth-off and an auth-on process side by side and alternates the same rounds between
them, so the ratio is measured under the same machine load. Otherwise authentication
is off: this benchmark measures the read path.

`--processes 1,2` compares `qis api` itself (`python -m app.entrypoints.cli api`, telemetry
and authentication off) run with `QIS_API__PROCESSES=1` and with 2: both are started
side by side, warmed, and the same cached-latest wrk runs alternate between them round
by round (the first of a round alternates too); the summary keeps each one's best and
median round.

wrk, not a Python client: on a 2-core machine a Python load generator needs more CPU
per request than the server and would measure itself. wrk (C, epoll) takes one core,
the API process the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from litestar import Response, get
from litestar.di import NamedDependency

from app.services.query import QueryService
from app.settings import load_settings
from benchmarks.e2e.processes import (
    LOGS,
    Process,
    auth_settings,
    bench_token,
    create_topics,
    env,
    free_port,
    own_topic_and_group,
    prepare_stack,
    telemetry_settings,
    wait_live,
)

SERIES = 10_000
PREFIX = "BENCH-Q-"
SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)
SNAP_TEXT = "2026-01-15T14:00:00Z"
ZIPF_S = 1.0

# wrk script: Zipf(s) ranks drawn at start (inverse CDF by binary search), 200,000 of
# them so the sequence does not repeat within a run, then one prepared request per call:
# drawing per request in Lua would cost wrk more CPU than the server spends.
_WRK_ZIPF = """
local n, s, prefix, snap, draws = %(n)d, %(s)f, "%(prefix)s", "%(snap)s", 200000
local cdf, total = {}, 0
for k = 1, n do total = total + 1 / (k ^ s); cdf[k] = total end
for k = 1, n do cdf[k] = cdf[k] / total end
math.randomseed(os.time())
local requests, i = {}, 0
for d = 1, draws do
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  requests[d] = wrk.format("GET", string.format(
    "/v1/reference-data/%%s%%05d/official-values/%%s", prefix, lo - 1, snap))
end

request = function()
  i = i %% draws + 1
  return requests[i]
end
"""


def zipf_script() -> str:
    """The wrk script reading the benchmark series' latest values, Zipf(ZIPF_S) over SERIES."""
    return _WRK_ZIPF % {"n": SERIES, "s": ZIPF_S, "prefix": PREFIX, "snap": SNAP_TEXT}


_WRK_REPORT = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %f, "non_2xx": %d, "errors": %d, '
    .. '"p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status, errors,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


# -- the API process -------------------------------------------------------------------


def serve(port: int) -> None:
    """The production app plus the benchmark-only routes, served like `qis api`."""
    import uvicorn

    from app.entrypoints.api import create_app
    from app.telemetry.logging import configure_logging
    from app.telemetry.setup import setup_telemetry
    from benchmarks.e2e.serve import bench_bare

    @get("/bench/cache-stats", sync_to_thread=False)
    def cache_stats(query_service: NamedDependency[QueryService]) -> Response[dict[str, int]]:
        stats = query_service.cache_stats
        return Response(
            {
                "l1_hits": stats.l1_hits,
                "l1_misses": stats.l1_misses,
                "l2_hits": stats.l2_hits,
                "l2_misses": stats.l2_misses,
                "loads": stats.loads,
                "fallbacks": stats.fallbacks,
            }
        )

    settings = load_settings(os.environ)
    configure_logging(settings.telemetry.log_level)
    telemetry = setup_telemetry(settings.telemetry, "api")
    app = create_app(settings, telemetry)
    app.register(bench_bare)
    app.register(cache_stats)
    uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_config=None,
        )
    ).run()


# -- the driver ------------------------------------------------------------------------


async def seed(dsn: str) -> None:
    """Version 1 of SNAP for every benchmark series (kept between runs)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO official_values
                   (reference_data_id, snap, version, value, status, method, sources_used,
                    sources_excluded, quality, observation_ids, supersedes, recorded_at)
               SELECT $1 || lpad(i::text, 5, '0'), $2::timestamptz, 1, 100 + i / 100.0, 'official',
                      'median', ARRAY['binance', 'coinbase', 'kraken'],
                      '[{"source": "bitstamp", "reason": "outlier"}]'::jsonb,
                      '{"score": 1.0, "completeness": 1.0, "timeliness": 1.0,
                        "consistency": 1.0, "validity": 1.0}'::jsonb,
                      ARRAY['o1', 'o2', 'o3'], NULL, $2::timestamptz + interval '3 seconds'
                 FROM generate_series(0, $3 - 1) AS i
               ON CONFLICT DO NOTHING""",
            PREFIX,
            SNAP,
            SERIES,
        )
    finally:
        await conn.close()


def start_api(
    port: int, telemetry: bool | dict[str, str] = False, auth: bool = False, limit: bool = True
) -> Process:
    """This module's `serve` mode; `telemetry` is on/off or the QIS_TELEMETRY__* settings."""
    settings = telemetry if isinstance(telemetry, dict) else telemetry_settings(telemetry, "query")
    process = Process(
        f"query-api-{port}",
        [sys.executable, "-m", "benchmarks.e2e.query_bench", "serve", str(port)],
        env(**settings, **auth_settings(auth, limit), **_db_env()),
    )
    return wait_live(process, port, probe="/health/ready")


def _db_env() -> dict[str, str]:
    # The database (and the rest of the stack) the caller points at, if not the defaults.
    return {k: v for k, v in os.environ.items() if k.startswith(("QIS_DB__", "QIS_REDIS__"))}


_WRK_POSTS = """
local bodies, i = {%(bodies)s}, 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/v1/observations", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def ingestion_script(prefix: str, per_request: int = 100, count: int = 200) -> str:
    """The wrk script posting `count` distinct `per_request`-observation bodies in turn."""
    from benchmarks.e2e.ingestion import bodies

    literals = ",".join(f"[==[{body.decode()}]==]" for body in bodies(prefix, per_request, count))
    return _WRK_POSTS % {"bodies": literals}


def get_json(url: str) -> Any:
    import httpx

    return httpx.get(url, timeout=5).raise_for_status().json()


async def warm(base: str, headers: dict[str, str] | None = None) -> None:
    """Read every series once (fills L1 and L2)."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=10, headers=headers) as client:
        queue = list(range(SERIES))

        async def reader() -> None:
            while queue:
                i = queue.pop()
                url = f"/v1/reference-data/{PREFIX}{i:05d}/official-values/{SNAP_TEXT}"
                response = await client.get(url)
                response.raise_for_status()

        await asyncio.gather(*(reader() for _ in range(16)))


def wrk(
    url: str, seconds: int, connections: int, script: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One wrk run; returns its RESULT line."""
    header_args = [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script + _WRK_REPORT)
    try:
        done = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "5s",
                "-s",
                lua.name,
                *header_args,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        )
    finally:
        Path(lua.name).unlink()
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["req_per_s"] = round(result["requests"] / result["seconds"], 1)
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, plus every round's requests/s."""
    ordered = sorted(runs, key=lambda r: r["req_per_s"])
    return ordered[len(ordered) // 2] | {"rounds_req_per_s": [r["req_per_s"] for r in runs]}


def ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup-seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per route")
    parser.add_argument("--no-stack", action="store_true", help="the stack is already up")
    parser.add_argument(
        "--telemetry",
        choices=["off", "on", "both"],
        default="off",
        help="both: the same rounds against a telemetry-off and a telemetry-on process",
    )
    parser.add_argument(
        "--auth",
        choices=["off", "on", "both"],
        default="off",
        help="on: authenticated reads; both: auth-off and auth-on processes, rounds alternated",
    )
    parser.add_argument(
        "--processes",
        default="",
        help="e.g. 1,2: `qis api` with each QIS_API__PROCESSES, rounds alternated",
    )
    args = parser.parse_args()
    if args.processes:
        counts = [int(n) for n in args.processes.split(",")]
        print(json.dumps(run_processes(args, counts), indent=1))
        return
    if args.auth == "both":
        print(json.dumps(run_auth_both(args), indent=2))
        return
    if args.telemetry == "both":
        side_by_side(args)
        return
    print(
        json.dumps(
            run_once(args, telemetry=args.telemetry == "on", auth=args.auth == "on"), indent=2
        )
    )


WORKLOADS = ("latest", "bare", "ingestion")


def side_by_side(args: argparse.Namespace) -> dict[str, Any]:
    """Telemetry off and on, two processes at once, the same wrk runs alternating between
    them round by round (the first process of a round alternates too)."""
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    if not args.no_stack:
        prepare_stack()
    settings = load_settings(_db_env())
    asyncio.run(seed(settings.db.writer_dsn))
    tag = uuid.uuid4().hex[:6].upper()
    # A topic of its own: the posted batches must not become the backlog of other
    # `qis worker`s on this machine (tests, `make run`).
    isolation = own_topic_and_group(f"TELCOST{tag}")
    create_topics(isolation)
    processes: dict[str, Process] = {}
    bases: dict[str, str] = {}
    try:
        for mode in ("off", "on"):
            port = free_port()
            processes[mode] = start_api(
                port, {**telemetry_settings(mode == "on", "query-bench"), **isolation}
            )
            bases[mode] = f"http://127.0.0.1:{port}"
        scripts = {
            "latest": ("", zipf_script(), args.connections),
            "bare": ("/bench/bare", "", args.connections),
            "ingestion": ("", ingestion_script(f"TELCOST{tag}"), 8),
        }
        for base in bases.values():
            asyncio.run(warm(base))
            for path, script, connections in scripts.values():
                wrk(base + path, args.warmup_seconds, connections, script)
        rounds: list[dict[str, dict[str, float]]] = []
        for round_ in range(args.rounds):
            order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
            figures: dict[str, dict[str, float]] = {w: {} for w in WORKLOADS}
            for workload, (path, script, connections) in scripts.items():
                for mode in order:
                    run = wrk(bases[mode] + path, args.seconds, connections, script)
                    if run["non_2xx"] or run["errors"]:
                        sys.exit(f"{workload} telemetry {mode}: {run}")
                    figures[workload][mode] = run["req_per_s"]
            rounds.append(figures)
            print(f"round {round_ + 1}: " + _row(figures), flush=True)
    finally:
        for process in processes.values():
            process.stop()
    summary = {
        "best": {w: _best(rounds, w, max) for w in WORKLOADS},
        "median": {w: _best(rounds, w, statistics.median) for w in WORKLOADS},
    }
    result = {
        "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},
        "unit": "req/s (ingestion: requests of 100 observations)",
        "rounds": rounds,
        **summary,
    }
    print(json.dumps(result, indent=1))
    for name, figures in summary.items():
        print(f"{name}: " + _row(figures))
    return result


def _best(rounds: list[dict[str, dict[str, float]]], workload: str, pick: Any) -> dict[str, float]:
    off = float(pick([r[workload]["off"] for r in rounds]))
    on = float(pick([r[workload]["on"] for r in rounds]))
    return {"off": off, "on": on, "ratio": round(on / off, 3)}


def _row(figures: dict[str, dict[str, float]]) -> str:
    return "  ".join(
        f"{w} {f['off']:.0f}/{f['on']:.0f} = {f['on'] / f['off']:.3f}" for w, f in figures.items()
    )


def run_auth_both(args: argparse.Namespace) -> dict[str, Any]:
    """Three processes: auth off, auth on, auth on without rate limiting (telemetry as
    `--telemetry`), warmed, then rounds alternating them and the bare route: the same
    machine load for all four."""
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    if not args.no_stack:
        prepare_stack()
    asyncio.run(seed(load_settings(_db_env()).db.writer_dsn))
    telemetry = args.telemetry == "on"
    headers = {"Authorization": f"Bearer {bench_token('qis/read')}"}
    variants = {"off": (False, False), "on": (True, True), "on_no_limit": (True, False)}
    ports = {name: free_port() for name in variants}
    processes: list[Process] = []
    try:
        for name, (auth, limit) in variants.items():
            processes.append(start_api(ports[name], telemetry, auth=auth, limit=limit))
    except BaseException:
        for process in processes:
            process.stop()
        raise
    bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    sent = {"off": None, "on": headers, "on_no_limit": headers}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in [*variants, "bare"]}
    zipf = zipf_script()
    try:
        for name, base in bases.items():
            asyncio.run(warm(base, sent[name]))
            wrk(base, args.warmup_seconds, args.connections, zipf, sent[name])
        refused = httpx_status(f"{bases['on']}/v1/reference-data/{PREFIX}00000")
        for _ in range(args.rounds):
            for name, base in bases.items():
                rounds[name].append(wrk(base, args.seconds, args.connections, zipf, sent[name]))
            rounds["bare"].append(
                wrk(f"{bases['off']}/bench/bare", args.seconds, args.connections, "")
            )
    finally:
        for process in processes:
            process.stop()
    results = {name: median_run(runs) for name, runs in rounds.items()}
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "connections": args.connections,
            "load": os.getloadavg(),
        },
        "workload": f"latest official value, Zipf(s={ZIPF_S}) over {SERIES} series",
        "telemetry": "on" if telemetry else "off",
        "auth_off": results["off"],
        "auth_on": results["on"],
        "auth_on_no_rate_limit": results["on_no_limit"],
        "bare_route": results["bare"],
        "auth_on_over_off": round(results["on"]["req_per_s"] / results["off"]["req_per_s"], 3),
        "auth_on_no_rate_limit_over_off": round(
            results["on_no_limit"]["req_per_s"] / results["off"]["req_per_s"], 3
        ),
        "without_token_status": refused,
        "logs": str(LOGS),
    }


def httpx_status(url: str) -> int:
    import httpx

    return httpx.get(url, timeout=5).status_code


def start_qis_api(port: int, processes: int) -> Process:
    """`qis api` as deployed (no benchmark routes) with `processes` processes."""
    process = Process(
        f"qis-api-{processes}p-{port}",
        [sys.executable, "-m", "app.entrypoints.cli", "api"],
        env(
            **telemetry_settings(False, "query"),
            **_db_env(),
            QIS_API__PORT=str(port),
            QIS_API__PROCESSES=str(processes),
        ),
    )
    return wait_live(process, port, timeout=180, probe="/health/ready")


def run_processes(args: argparse.Namespace, counts: list[int]) -> dict[str, Any]:
    """`qis api` with each of `counts` processes, cached latest reads alternated round by
    round between them (the same machine load for all)."""
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    if not args.no_stack:
        prepare_stack()
    asyncio.run(seed(load_settings(_db_env()).db.writer_dsn))
    ports = {n: free_port() for n in counts}
    processes: list[Process] = []
    rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    zipf = zipf_script()
    try:
        for n, port in ports.items():
            processes.append(start_qis_api(port, n))
        bases = {n: f"http://127.0.0.1:{port}" for n, port in ports.items()}
        for base in bases.values():
            asyncio.run(warm(base))
            wrk(base, args.warmup_seconds, args.connections, zipf)
        for round_ in range(args.rounds):
            order = counts if round_ % 2 == 0 else counts[::-1]
            for n in order:
                run = wrk(bases[n], args.seconds, args.connections, zipf)
                if run["non_2xx"] or run["errors"]:
                    sys.exit(f"{n} processes: {run}")
                rounds[n].append(run)
            print(
                f"round {round_ + 1}: "
                + "  ".join(f"{n}p {rounds[n][-1]['req_per_s']:.0f} req/s" for n in counts),
                file=sys.stderr,
                flush=True,
            )
    finally:
        for process in processes:
            process.stop()
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "connections": args.connections,
            "seconds": args.seconds,
            "load": os.getloadavg(),
        },
        "workload": f"latest official value, Zipf(s={ZIPF_S}) over {SERIES} series, cached",
        "telemetry": "off",
        "auth": "off",
        "processes": {
            str(n): {
                "best_req_per_s": max(r["req_per_s"] for r in runs),
                "median": median_run(runs),
            }
            for n, runs in rounds.items()
        },
        "logs": str(LOGS),
    }


def run_once(args: argparse.Namespace, telemetry: bool, auth: bool = False) -> dict[str, Any]:
    """Seed, start one API process, warm it, then alternate wrk rounds: latest vs bare."""
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    if not args.no_stack:
        prepare_stack()
    settings = load_settings(_db_env())
    asyncio.run(seed(settings.db.writer_dsn))
    port = free_port()
    api = start_api(port, telemetry, auth)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {bench_token('qis/read')}"} if auth else None
    try:
        asyncio.run(warm(base, headers))
        zipf = zipf_script()
        wrk(base, args.warmup_seconds, args.connections, zipf, headers)
        wrk(f"{base}/bench/bare", args.warmup_seconds, args.connections, "")
        before = get_json(f"{base}/bench/cache-stats")
        queries, bares = [], []
        # Alternating rounds: other load on the machine hits both routes alike.
        for _ in range(args.rounds):
            queries.append(wrk(base, args.seconds, args.connections, zipf, headers))
            bares.append(wrk(f"{base}/bench/bare", args.seconds, args.connections, ""))
        after = get_json(f"{base}/bench/cache-stats")
    finally:
        api.stop()
    query, bare = median_run(queries), median_run(bares)
    delta = {k: after[k] - before[k] for k in after}
    lookups = delta["l1_hits"] + delta["l1_misses"]
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "connections": args.connections,
            "load": os.getloadavg(),
        },
        "workload": f"latest official value, Zipf(s={ZIPF_S}) over {SERIES} series",
        "official_value_latest": query,
        "bare_route": bare,
        "ratio_to_bare": round(query["req_per_s"] / bare["req_per_s"], 3),
        "cache": {
            **delta,
            "l1_hit_ratio": ratio(delta["l1_hits"], lookups),
            "hit_ratio": ratio(lookups - delta["loads"], lookups),
        },
        "logs": str(LOGS),
        "telemetry": "on" if telemetry else "off",
        "auth": "on" if auth else "off",
    }


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        main()
