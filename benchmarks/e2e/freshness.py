"""End-to-end freshness: observation acknowledged -> official version readable over HTTP.

    .venv/bin/python -m benchmarks.e2e.freshness [--seconds 30] [--load-rate 100]

Starts the stack, a `qis api` (the benchmark app) and a `qis worker` on an observations
topic and consumer group of their own (and, with `--with-scheduler`, a `qis scheduler`:
not needed, all expected sources arrive together and the relay does not gate reads).
While the ingestion benchmark's batch scenario runs in the background (100-observation
requests, open loop at `--load-rate` requests/s, 1000 series x 5 sources; with
`--load-series configured`, the default, those series are configured with their 5 sources
and their snaps are in open windows, so each snap gets one version when its fifth source
arrives; `unconfigured` is the worst case, every observation a new version), it sends a
wave of probe series every `--every` seconds: one request carrying the 3 expected sources
(a, b, c) of `--wave` fresh series for the current second. For each probe series it
measures from the 202 (observation acknowledged) to the first `200` of
`GET /v1/reference-data/{id}/official-values/{snap}` (version readable; asked as soon
as the commit is announced, then every `--poll-ms`), and reports P50/P95/P99.
Target: P95 <= 1 s.

Also reported: `recorded_at - ack` (the worker's commit, without the polling and read
path), and the background load actually achieved. By default everything runs against a
database of its own (`--database`), created and migrated on first use, so concurrent
users of the shared `qis` database do not queue on the same locks. Telemetry is on as in
the other benchmarks (`telemetry_settings`: the seed's sampling, spans and EMF written to
files) unless `--telemetry-off`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from app.adapters.postgres.publications import CHANNEL, parse_payload
from benchmarks.e2e.ingestion import bodies
from benchmarks.e2e.processes import (
    VENV_BIN,
    Process,
    create_topics,
    database_settings,
    env,
    free_port,
    own_database,
    own_topic_and_group,
    prepare_stack,
    stack_settings,
    start_api,
    start_worker,
    telemetry_settings,
)
from benchmarks.loadgen import Result, open_loop, request_bytes

SOURCES = ("a", "b", "c")
# The background load's series and sources (ingestion.bodies: src0..src4).
LOAD_SERIES = 1000
LOAD_SOURCES = tuple(f"src{n}" for n in range(5))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(max(values), 1),
        "mean_ms": round(statistics.fmean(values), 1),
    }


def stamp(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class Probe:
    """Waves of fresh series; ack -> readable per series.

    Polling every series every few milliseconds would itself load the API and this
    process (and so measure itself). Instead the probe LISTENs to the writer's
    `qis_official_values` notifications (sent at commit) and only then reads the value
    over HTTP, retrying every `poll_ms` until it is served: the result is when a client
    could read it, at the cost of about one request per series.
    """

    def __init__(self, base_url: str, prefix: str, wave: int, poll_ms: float) -> None:
        # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them,
        # which would otherwise race with their reuse.
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=30,
            limits=httpx.Limits(max_connections=100, keepalive_expiry=2.0),
        )
        self.prefix = prefix
        self.wave = wave
        self.poll = poll_ms / 1000
        self.readable_ms: list[float] = []
        self.recorded_ms: list[float] = []
        self.missing = 0
        self.read_errors = 0
        self._count = 0
        self._committed: dict[str, asyncio.Event] = {}
        self._listener: asyncpg.Connection | None = None

    async def listen(self, dsn: str) -> None:
        self._listener = await asyncpg.connect(dsn)
        await self._listener.add_listener(CHANNEL, self._on_published)

    def _on_published(self, *args: object) -> None:
        published = parse_payload(str(args[3]))
        event = self._committed.get(published.series)
        if event is not None:
            event.set()

    async def aclose(self) -> None:
        await self.http.aclose()
        if self._listener is not None:
            await self._listener.close()

    async def configure(self, series: list[str], sources: Sequence[str] = SOURCES) -> None:
        config = {"expected_sources": list(sources), "window_seconds": 60}
        semaphore = asyncio.Semaphore(20)

        async def put(series_id: str) -> None:
            async with semaphore:
                response = await self.http.put(f"/v1/reference-data/{series_id}", json=config)
                response.raise_for_status()

        await asyncio.gather(*(put(s) for s in series))

    def next_series(self) -> list[str]:
        names = [f"{self.prefix}-{self._count + i:05d}" for i in range(self.wave)]
        self._count += self.wave
        return names

    async def send_wave(self, series: list[str]) -> None:
        snap = datetime.now(UTC).replace(microsecond=0)
        observed = stamp(snap + timedelta(milliseconds=100))
        items = [
            {
                "reference_data_id": s,
                "source": source,
                "snap": stamp(snap),
                "value": 100.0 + n * 0.01,
                "observed_at": observed,
            }
            for s in series
            for n, source in enumerate(SOURCES)
        ]
        for s in series:
            self._committed[s] = asyncio.Event()
        response = await self.http.post("/v1/observations", json={"observations": items})
        acked = time.time()
        response.raise_for_status()
        results = await asyncio.gather(
            *(self._until_readable(s, stamp(snap), acked) for s in series)
        )
        self.missing += sum(1 for ok in results if not ok)

    async def _until_readable(self, series: str, snap: str, acked: float) -> bool:
        url = f"/v1/reference-data/{series}/official-values/{snap}"
        try:
            await asyncio.wait_for(self._committed[series].wait(), 30)
        except TimeoutError:
            return False
        deadline = time.time() + 30
        while time.time() < deadline:
            body = await self._read(url)
            if body is not None:
                self.readable_ms.append((time.time() - acked) * 1000)
                recorded = datetime.fromisoformat(body["recorded_at"]).timestamp()
                self.recorded_ms.append((recorded - acked) * 1000)
                return True
            await asyncio.sleep(self.poll)
        return False

    async def _read(self, url: str) -> dict[str, str] | None:
        try:
            response = await self.http.get(url)
        except httpx.TransportError:
            self.read_errors += 1
            return None  # a dropped keep-alive connection: ask again at the next poll
        if response.status_code == 200:
            body: dict[str, str] = response.json()
            return body
        return None


async def run(args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    settings = telemetry_settings(not args.telemetry_off, "freshness")
    if args.database:
        # Empty tables each run: results do not drift with what earlier runs left behind.
        dsn = await own_database(args.database, fresh=True)
        settings |= database_settings(dsn)
    prefix = "FRESH" + uuid.uuid4().hex[:6].upper()
    probe = Probe(f"http://127.0.0.1:{port}", prefix, args.wave, args.poll_ms)
    processes: list[Process] = []
    isolated = {**settings, **own_topic_and_group(prefix)}
    try:
        await probe.listen(settings.get("QIS_DB__WRITER_DSN", stack_settings().db.writer_dsn))
        create_topics(isolated)  # before the api: its first produce needs the topic
        processes.append(start_worker(**isolated))
        processes.append(start_api(port, **isolated))
        if args.with_scheduler:  # readability does not depend on it (the relay publishes to Kafka)
            processes.append(
                Process("scheduler", [str(VENV_BIN / "qis"), "scheduler"], env(**isolated))
            )
        waves = int(args.seconds / args.every)
        series = [probe.next_series() for _ in range(waves + 1)]
        await probe.configure([s for wave in series for s in wave])
        await probe.send_wave(series[0])  # warm-up: connections, caches, first assignment
        probe.readable_ms.clear()
        probe.recorded_ms.clear()
        # Distinct bodies for the whole run: a repeated observation is a no-op in the store,
        # so cycling through a few bodies would understate the reconciliation load.
        count = max(1, math.ceil(args.load_rate * (args.seconds + 2)))
        if args.load_series == "configured":
            # Like a production feed: series configured with their 5 sources and snaps in
            # open windows, so a snap's version 1 comes when its fifth source arrives.
            await probe.configure(
                [f"{prefix}L-{n:04d}" for n in range(LOAD_SERIES)], sources=LOAD_SOURCES
            )
            now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
            load_bodies = bodies(prefix + "L", 100, count, LOAD_SERIES, base=now)
        else:
            # Worst case: unconfigured series, snaps in closed windows: every observation
            # publishes a new version (and its audit record and event).
            load_bodies = bodies(prefix + "L", 100, count, LOAD_SERIES)
        payloads = [request_bytes("POST", "/v1/observations", b) for b in load_bodies]
        load: asyncio.Task[Result] | None = None
        if args.load_rate > 0:
            load = asyncio.create_task(
                open_loop(port, lambda i: payloads[i % len(payloads)], args.load_rate, args.seconds)
            )
        await asyncio.sleep(1.0)  # let the load settle in
        tasks = []
        for wave in series[1:]:
            tasks.append(asyncio.create_task(probe.send_wave(wave)))
            await asyncio.sleep(args.every)
        await asyncio.gather(*tasks)
        background = (await load).summary(100) if load else {}
    finally:
        await probe.aclose()
        for process in reversed(processes):
            process.stop()
    return {
        "ack_to_readable": summary(probe.readable_ms),
        "ack_to_recorded_at": summary(probe.recorded_ms),
        "probe_series_not_readable_in_30s": probe.missing,
        "probe_read_errors": probe.read_errors,
        "background_load": background,
        "parameters": vars(args),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--load-rate", type=float, default=100, help="batch100 requests/s")
    parser.add_argument("--wave", type=int, default=20, help="probe series per wave")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between waves")
    parser.add_argument("--poll-ms", type=float, default=20)
    parser.add_argument(
        "--load-series",
        choices=["configured", "unconfigured"],
        default="configured",
        help="background series configured with their 5 sources and open windows (a version "
        "per snap), or unconfigured in closed windows (a version per observation)",
    )
    parser.add_argument("--telemetry-off", action="store_true")
    parser.add_argument(
        "--with-scheduler", action="store_true", help="also run a scheduler (relays the outbox)"
    )
    parser.add_argument(
        "--database",
        default="qis_freshness",
        help="database of its own on the stack's server ('' = the shared one)",
    )
    args = parser.parse_args()
    prepare_stack()
    results = asyncio.run(run(args))
    print(json.dumps(results, indent=1))
    readable = results["ack_to_readable"]
    assert isinstance(readable, dict)
    if readable.get("n"):
        verdict = "meets" if readable["p95_ms"] <= 1000 else "MISSES"
        print(
            f"ack -> readable: P50 {readable['p50_ms']} ms, P95 {readable['p95_ms']} ms "
            f"({verdict} the P95 <= 1 s target)"
        )


if __name__ == "__main__":
    main()
