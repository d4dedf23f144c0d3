"""Ingestion benchmark on the local stack (api, worker, broker and database on this machine).

    .venv/bin/python -m benchmarks.e2e.ingestion [--seconds 15] [--with-worker] [--worker-only]
        [--backlog 100000] [--lanes 1,2] [--rounds 3]

Reports, side by side in one run:
- 100-observation requests, closed loop: observations/s and P50/P95/P99 request latency
  (client-measured: request sent -> 202, which includes the broker ack), against the
  ceiling of a bare route that only decodes the same body;
- single-observation requests, open loop at 1,000 requests/s, the same two routes;
- each of those with telemetry off and on (tracing at the seed's rates to a JSON-lines
  file, EMF metrics to a file), for the telemetry-cost ratio;
- worker persistence: observations stored per second draining a backlog, every
  observation a new version (unconfigured series, closed windows), and with configured
  series (5 expected sources, open windows: one version per snap, when its fifth source
  arrives). `--worker-only` runs only these two. `--lanes 1,2 --rounds 3` runs both
  drains with each `QIS_WORKER__LANES` setting in turn, rounds alternated, and prints the
  best and every round of each.

The HTTP scenarios measure the api (request -> broker ack) with no worker running, unless
`--with-worker`: on a 2-core machine a worker draining at ~10,000 obs/s, with its
PostgreSQL, takes the CPU the api would use (one run: batch 19,800 obs/s and a single@1000/s
P95 of 1.2 s with it, against ~35,000 obs/s without), and its varying backlog muddles the
telemetry on/off comparison. The worker's own throughput is the last scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from benchmarks.e2e.processes import (
    create_topics,
    database_settings,
    free_port,
    own_database,
    own_topic_and_group,
    prepare_stack,
    start_api,
    start_worker,
    telemetry_settings,
)
from benchmarks.loadgen import closed_loop, open_loop, request_bytes, send_all


def bodies(
    prefix: str, per_request: int, count: int, series: int = 1000, base: datetime | None = None
) -> list[bytes]:
    """Distinct request bodies: `series` series x 5 sources, snaps one minute apart from
    `base` (default 2026-01-01: windows long closed, so every observation is published)."""
    base = base or datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    n = 0
    for _ in range(count):
        items = []
        for _ in range(per_request):
            snap = base + timedelta(minutes=n // (series * 5))
            stamp = snap.isoformat().replace("+00:00", "Z")
            items.append(
                {
                    "reference_data_id": f"{prefix}-{n % series:04d}",
                    "source": f"src{(n // series) % 5}",
                    "snap": stamp,
                    "value": 100.0 + (n % 13) * 0.01,
                    "observed_at": stamp,
                }
            )
            n += 1
        out.append(json.dumps({"observations": items}).encode())
    return out


async def http_scenarios(
    seconds: float, telemetry: str, prefix: str, isolation: dict[str, str]
) -> dict[str, dict[str, float]]:
    port = free_port()
    api = start_api(port, **{**telemetry_settings(telemetry == "on", "ingestion"), **isolation})
    try:
        batch = bodies(f"{prefix}{telemetry.upper()}B", 100, 400)
        single = bodies(f"{prefix}{telemetry.upper()}S", 1, 30_000)
        results = {}
        # Single observations first, on an api that has not just been saturated: run after
        # the 50,000 obs/s open loop (which this machine does not sustain), their P95 was
        # 325 ms in one run, against about 20 ms otherwise.
        for route in ("/bench/decode", "/v1/observations"):
            payloads = [request_bytes("POST", route, b) for b in single]
            await open_loop(port, lambda i, p=payloads: p[i % len(p)], 1000, 1.0)  # warm-up
            r = await open_loop(port, lambda i, p=payloads: p[i % len(p)], 1000, seconds)
            results[f"single@1000/s {route} telemetry={telemetry}"] = r.summary(1)
        for route in ("/bench/decode", "/v1/observations"):
            payloads = [request_bytes("POST", route, b) for b in batch]
            await closed_loop(port, payloads[:20], 8, 1.0)  # warm-up
            r = await closed_loop(port, payloads, 8, seconds)
            results[f"batch100 max {route} telemetry={telemetry}"] = r.summary(100)
            r = await open_loop(port, lambda i, p=payloads: p[i % len(p)], 500, seconds)
            results[f"batch100@500/s {route} telemetry={telemetry}"] = r.summary(100)
        return results
    finally:
        api.stop()


async def stored(pool: asyncpg.Pool, prefix: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM observations WHERE reference_data_id LIKE $1", prefix + "%"
        )
    )


SERIES = 1000
SOURCES = [f"src{i}" for i in range(5)]


def configure_requests(prefix: str) -> list[bytes]:
    """`PUT /v1/reference-data/{id}` for the backlog's series: their 5 sources expected
    within 60 s of a snap, so a snap's version 1 comes when its fifth source arrives."""
    config = json.dumps({"expected_sources": SOURCES, "window_seconds": 60}).encode()
    return [
        request_bytes("PUT", f"/v1/reference-data/{prefix}-{n:04d}", config) for n in range(SERIES)
    ]


async def worker_persistence(
    prefix: str, total: int, dsn: str, *, configured: bool = False, lanes: int | None = None
) -> dict[str, float]:
    """Post a backlog while no worker runs, then time one worker draining it.

    Unconfigured: snaps of 2026-01-01 (windows long closed), every observation a new
    version. Configured: the series expect their 5 sources and the snaps start 5 minutes
    ahead (windows open during the drain), so each snap gets one version, when its fifth
    source arrives. `lanes`: the worker's `QIS_WORKER__LANES` (None: its default)."""
    isolation = {
        **telemetry_settings(False, "ingestion"),
        **own_topic_and_group(prefix),
        **database_settings(dsn),
    }
    create_topics(isolation)
    port = free_port()
    api = start_api(port, **isolation)
    try:
        base = None
        if configured:
            configs = await send_all(port, configure_requests(prefix), 4)
            assert set(configs.statuses) <= {200, 201}, configs.statuses
            base = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=5)
        payloads = [
            request_bytes("POST", "/v1/observations", b)
            for b in bodies(prefix, 500, total // 500, SERIES, base)
        ]
        posted = await send_all(port, payloads, 4)
    finally:
        api.stop()
    assert posted.statuses == {202: len(payloads)}, posted.statuses
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    lane_setting = {} if lanes is None else {"QIS_WORKER__LANES": str(lanes)}
    worker = start_worker(**isolation, **lane_setting)
    try:
        started = time.perf_counter()
        first = None
        count = 0
        deadline = started + 600
        while count < total and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
            count = await stored(pool, prefix)
            if first is None and count:
                first = time.perf_counter()
        done = time.perf_counter()
        versions = int(
            await pool.fetchval(
                "SELECT count(*) FROM official_values WHERE reference_data_id LIKE $1",
                prefix + "%",
            )
        )
    finally:
        worker.stop()
        await pool.close()
    assert first is not None
    return {
        "observations": count,
        "versions": versions,
        "seconds_from_start": round(done - started, 2),
        "seconds_from_first_row": round(done - first, 2),
        "observations_per_s": round(count / (done - first), 1),
    }


def print_table(results: dict[str, dict[str, float]]) -> None:
    """Side-by-side table plus the ratios the targets are about."""
    print(
        f"{'scenario':58} {'req/s':>9} {'obs/s':>10} {'p50':>7} {'p95':>7} {'p99':>7} {'non2xx':>6}"
    )
    for name, r in results.items():
        if "req_per_s" in r:
            print(
                f"{name:58} {r['req_per_s']:>9} {r['items_per_s']:>10} {r['p50_ms']:>7}"
                f" {r['p95_ms']:>7} {r['p99_ms']:>7} {r['non_2xx']:>6}"
            )
    if "batch100 max /v1/observations telemetry=on" in results:
        for telemetry in ("off", "on"):
            route = results[f"batch100 max /v1/observations telemetry={telemetry}"]
            ceiling = results[f"batch100 max /bench/decode telemetry={telemetry}"]
            ratio = route["items_per_s"] / ceiling["items_per_s"]
            print(f"batch100 ingestion / decode ceiling (telemetry {telemetry}): {ratio:.2f}")
        off = results["batch100 max /v1/observations telemetry=off"]["items_per_s"]
        on = results["batch100 max /v1/observations telemetry=on"]["items_per_s"]
        print(f"telemetry cost on batch ingestion throughput: {100 * (1 - on / off):.1f} %")
    drains: dict[str, list[float]] = {}
    for name, r in results.items():
        if name.startswith("worker persistence"):
            print(f"{name}: {r}")
            drains.setdefault(name.split(" round ")[0], []).append(r["observations_per_s"])
    if any(len(v) > 1 for v in drains.values()):
        for name, rates in drains.items():
            print(f"{name}: best {max(rates):,.0f} obs/s, rounds {[round(x) for x in rates]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument(
        "--with-worker", action="store_true", help="a worker drains during the HTTP scenarios"
    )
    parser.add_argument("--worker-only", action="store_true", help="only the worker drains")
    parser.add_argument(
        "--lanes",
        default="",
        help="worker drains with these QIS_WORKER__LANES, side by side (e.g. 1,2; "
        "default: the worker's default)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="worker drains: rounds, lane settings alternated"
    )
    args = parser.parse_args()
    lane_choices: list[int | None] = [int(n) for n in args.lanes.split(",") if n] or [None]
    prepare_stack()
    prefix = "BENCH" + uuid.uuid4().hex[:6].upper()
    # A database, topic and group of its own, emptied each run: the shared `qis` database
    # and topic stay free of benchmark backlogs (a test's worker would inherit them).
    dsn = asyncio.run(own_database("qis_ingestion", fresh=True))
    isolation = {**own_topic_and_group(prefix), **database_settings(dsn)}
    create_topics(isolation)
    worker = (
        start_worker(**{**telemetry_settings(False, "ingestion"), **isolation})
        if args.with_worker
        else None
    )
    results: dict[str, dict[str, float]] = {}
    try:
        for telemetry in () if args.worker_only else ("off", "on"):
            results.update(asyncio.run(http_scenarios(args.seconds, telemetry, prefix, isolation)))
    finally:
        if worker is not None:
            worker.stop()
    for n in range(args.rounds):
        for lanes in lane_choices:
            label = "" if lanes is None else f" lanes={lanes}"
            suffix = f" round {n + 1}" if args.rounds > 1 else ""
            tag = f"{n}{lanes or ''}"
            results[f"worker persistence{label}{suffix}"] = asyncio.run(
                worker_persistence(f"{prefix}W{tag}", args.backlog, dsn, lanes=lanes)
            )
            results[f"worker persistence, configured series{label}{suffix}"] = asyncio.run(
                worker_persistence(
                    f"{prefix}C{tag}", args.backlog, dsn, configured=True, lanes=lanes
                )
            )
    print(json.dumps(results, indent=1))
    print_table(results)


if __name__ == "__main__":
    main()
