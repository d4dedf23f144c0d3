"""Several workers on one topic under load, started and stopped mid-run: still exactly once.

    .venv/bin/python -m benchmarks.e2e.scale_out [--seconds 40] [--rate 2000] [--workers 3]

An api takes observations at `--rate` per second (open loop, 50 per request, every
observation of a snap whose window has long closed, so each one makes a new version) for
`--seconds`, on a 12-partition topic of the run's own, while up to `--workers` `qis worker`
processes share the consumer group and a `qis scheduler` relays the outbox. The workers
change mid-run, every change a rebalance:

    0 %   workers 1..N start            45 %  worker 2 stops (SIGTERM: graceful)
    20 %  worker N+1 starts (N+1 run)   60 %  worker N+2 starts
    75 %  worker 3 is killed (SIGKILL: a crash, its open transactions roll back)

Then the run waits until every accepted observation is stored and every event relayed,
and checks, exiting 1 on any failure:
- every accepted observation is stored exactly once, none missing, none extra;
- per (series, snap) the versions are 1..n with no gap, and the last one uses or
  excludes every source that reported;
- on the official-values topic, per (series, snap) the versions arrive in increasing
  order with no duplicate event id, exactly the versions stored; per series the events
  arrive in the order their versions were recorded.
Prints per-worker records consumed (from the stored consumer positions, sampled every
0.5 s and attributed to the owner of each partition) and its rate while it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

import asyncpg
import msgspec

from app.adapters.kafka import read_topic
from app.domain.observation import derive_observation_id
from app.settings import KafkaSettings
from benchmarks.e2e.ingestion import bodies
from benchmarks.e2e.processes import (
    VENV_BIN,
    Process,
    create_topics,
    database_settings,
    env,
    free_port,
    own_database,
    stack_settings,
    start_api,
    start_worker,
    telemetry_settings,
)
from benchmarks.loadgen import open_loop, request_bytes

PER_REQUEST = 50


@dataclass
class WorkerRun:
    name: str
    process: Process
    started: float
    stopped: float | None = None
    how: str = "running"
    records: int = 0


@dataclass
class Positions:
    """Stored consumer positions sampled over time, attributed to partition owners."""

    last: dict[int, int] = field(default_factory=dict)
    by_pid: Counter[int] = field(default_factory=Counter)

    async def sample(self, pool: asyncpg.Pool, group: str, topic: str) -> None:
        rows = await pool.fetch(
            "SELECT partition, next_offset, owner FROM consumer_offsets"
            " WHERE group_id = $1 AND topic = $2",
            group,
            topic,
        )
        for row in rows:
            before = self.last.get(row["partition"], 0)
            self.last[row["partition"]] = row["next_offset"]
            if row["next_offset"] > before and row["owner"]:
                self.by_pid[int(row["owner"].split(":")[1])] += row["next_offset"] - before


def _isolation(prefix: str, dsn: str) -> dict[str, str]:
    low = prefix.lower()
    return {
        **telemetry_settings(False, "scale-out"),
        **database_settings(dsn),
        "QIS_KAFKA__OBSERVATIONS_TOPIC": f"qis.observations.{low}",
        "QIS_KAFKA__DLQ_TOPIC": f"qis.observations.dlq.{low}",
        "QIS_KAFKA__OFFICIAL_VALUES_TOPIC": f"qis.official-values.{low}",
        "QIS_KAFKA__QUALITY_ALERTS_TOPIC": f"qis.quality-alerts.{low}",
        "QIS_KAFKA__AUDIT_TOPIC": f"qis.audit.{low}",
        "QIS_WORKER__GROUP_ID": f"{low}-worker",
        "QIS_SCHEDULER__INTERVAL_SECONDS": "0.5",
    }


def expected_ids(payloads: list[bytes]) -> set[str]:
    ids = set()
    for body in payloads:
        for item in json.loads(body)["observations"]:
            ids.add(
                derive_observation_id(
                    item["reference_data_id"],
                    item["source"],
                    datetime.fromisoformat(item["snap"]),
                    item["value"],
                    datetime.fromisoformat(item["observed_at"]),
                    None,
                )
            )
    return ids


async def _drained(pool: asyncpg.Pool, prefix: str, total: int) -> bool:
    stored = await pool.fetchval(
        "SELECT count(*) FROM observations WHERE reference_data_id LIKE $1", prefix + "%"
    )
    pending = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND set_aside_at IS NULL"
    )
    return bool(stored >= total and pending == 0)


async def check_database(pool: asyncpg.Pool, prefix: str, expected: set[str]) -> list[str]:
    problems = []
    rows = await pool.fetch(
        "SELECT observation_id FROM observations WHERE reference_data_id LIKE $1", prefix + "%"
    )
    stored = [r["observation_id"] for r in rows]
    if len(stored) != len(set(stored)):
        problems.append(f"{len(stored) - len(set(stored))} observations stored twice")
    if missing := expected - set(stored):
        problems.append(f"{len(missing)} accepted observations missing")
    if extra := set(stored) - expected:
        problems.append(f"{len(extra)} observations stored that were not sent")
    gaps = await pool.fetchval(
        """SELECT count(*) FROM (
               SELECT reference_data_id, snap FROM official_values
                WHERE reference_data_id LIKE $1
                GROUP BY 1, 2 HAVING max(version) <> count(*) OR min(version) <> 1) g""",
        prefix + "%",
    )
    if gaps:
        problems.append(f"{gaps} snaps whose versions are not 1..n")
    incomplete = await pool.fetchval(
        """WITH last AS (
               SELECT DISTINCT ON (reference_data_id, snap) reference_data_id, snap,
                      sources_used, sources_excluded
                 FROM official_values WHERE reference_data_id LIKE $1
                ORDER BY reference_data_id, snap, version DESC),
           reported AS (
               SELECT reference_data_id, snap, array_agg(DISTINCT source) AS sources
                 FROM observations WHERE reference_data_id LIKE $1 GROUP BY 1, 2)
           SELECT count(*) FROM reported r LEFT JOIN last l USING (reference_data_id, snap)
            WHERE l.snap IS NULL OR NOT r.sources <@ (l.sources_used || ARRAY(
                  SELECT e->>'source' FROM jsonb_array_elements(l.sources_excluded) e))""",
        prefix + "%",
    )
    if incomplete:
        problems.append(f"{incomplete} snaps whose last version misses a reporting source")
    return problems


class _Event(msgspec.Struct):
    event_id: str
    reference_data_id: str
    snap: datetime
    version: int
    recorded_at: datetime


async def check_events(
    kafka: KafkaSettings, pool: asyncpg.Pool, prefix: str
) -> tuple[list[str], int]:
    decode = msgspec.json.Decoder(_Event)
    by_series: dict[str, list[_Event]] = defaultdict(list)
    seen: Counter[str] = Counter()
    async with aclosing(read_topic(kafka, kafka.official_values_topic)) as records:
        async for record in records:
            event = decode.decode(record.value or b"")
            if event.reference_data_id.startswith(prefix):
                seen[event.event_id] += 1
                by_series[event.reference_data_id].append(event)
    problems = []
    if duplicated := sum(1 for n in seen.values() if n > 1):
        problems.append(f"{duplicated} events published more than once")
    out_of_order = 0
    published: set[tuple[str, datetime, int]] = set()
    for events in by_series.values():
        last_version: dict[datetime, int] = {}
        for before, after in pairwise(events):
            if after.recorded_at < before.recorded_at:
                out_of_order += 1
        for event in events:
            if event.version <= last_version.get(event.snap, 0):
                out_of_order += 1
            last_version[event.snap] = event.version
            published.add((event.reference_data_id, event.snap, event.version))
    if out_of_order:
        problems.append(f"{out_of_order} events out of order within their series")
    rows = await pool.fetch(
        "SELECT reference_data_id, snap, version FROM official_values"
        " WHERE reference_data_id LIKE $1",
        prefix + "%",
    )
    stored = {(r["reference_data_id"], r["snap"], r["version"]) for r in rows}
    if stored != published:
        problems.append(
            f"events vs versions: {len(stored - published)} versions never published, "
            f"{len(published - stored)} events of no stored version"
        )
    return problems, len(seen)


@dataclass
class Outcome:
    rate: float
    seconds: float
    p95_ms: float
    sent_at: float
    drained_at: float
    runs: list[WorkerRun]
    events: int
    problems: list[str]
    records: int  # on the observations topic: the stored positions at the end, summed


async def scale_out(seconds: float, rate: float, workers: int) -> Outcome:
    """The run described above; `problems` is empty when every check passed."""
    prefix = "SO" + uuid.uuid4().hex[:6].upper()
    dsn = await own_database("qis_bench_scale_out", fresh=True)
    isolation = _isolation(prefix, dsn)
    create_topics(isolation)
    requests = int(rate * seconds / PER_REQUEST)
    payloads = bodies(prefix, PER_REQUEST, requests, series=2000)
    expected = expected_ids(payloads)
    wire = [request_bytes("POST", "/v1/observations", b) for b in payloads]
    port = free_port()
    api = start_api(port, **isolation)
    scheduler = Process("scheduler", [str(VENV_BIN / "qis"), "scheduler"], env(**isolation))
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
    assert pool is not None
    runs: list[WorkerRun] = []
    positions = Positions()
    t0 = time.perf_counter()

    def launch() -> None:
        name = f"worker-{len(runs) + 1}"
        runs.append(WorkerRun(name, start_worker(**isolation), time.perf_counter() - t0))

    async def stop(index: int, how: str) -> None:
        worker = runs[index]
        worker.process.popen.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
        await asyncio.to_thread(worker.process.popen.wait, 60)
        worker.stopped, worker.how = time.perf_counter() - t0, how

    async def start() -> None:
        launch()

    stops: list[asyncio.Task[None]] = []
    schedule: list[tuple[float, Callable[[], Coroutine[None, None, None]]]] = [
        (0.20, start),
        (0.45, lambda: stop(1, "SIGTERM")),
        (0.60, start),
        (0.75, lambda: stop(2, "SIGKILL")),
    ]
    try:
        for _ in range(workers):
            launch()
        load = asyncio.create_task(open_loop(port, lambda i: wire[i], rate / PER_REQUEST, seconds))
        while not load.done():
            await asyncio.sleep(0.5)
            await positions.sample(pool, isolation["QIS_WORKER__GROUP_ID"], _topic(isolation))
            while schedule and time.perf_counter() - t0 >= schedule[0][0] * seconds:
                stops.append(asyncio.create_task(schedule.pop(0)[1]()))
        result = await load
        for _, action in schedule:
            stops.append(asyncio.create_task(action()))
        await asyncio.gather(*stops)
        sent_at = time.perf_counter() - t0
        deadline = time.perf_counter() + 600
        while not await _drained(pool, prefix, len(expected)):
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.5)
            await positions.sample(pool, isolation["QIS_WORKER__GROUP_ID"], _topic(isolation))
        drained_at = time.perf_counter() - t0
        await positions.sample(pool, isolation["QIS_WORKER__GROUP_ID"], _topic(isolation))
        problems = []
        if result.statuses != Counter({202: len(wire)}):
            problems.append(f"api answers {dict(result.statuses)}, errors {result.errors}")
        problems += await check_database(pool, prefix, expected)
        kafka = msgspec.structs.replace(
            stack_settings().kafka,
            official_values_topic=isolation["QIS_KAFKA__OFFICIAL_VALUES_TOPIC"],
        )
        event_problems, events = await check_events(kafka, pool, prefix)
        problems += event_problems
    finally:
        for worker in runs:
            if worker.stopped is None:
                worker.process.stop()
        scheduler.stop()
        api.stop()
        await pool.close()
    for worker in runs:
        worker.records = positions.by_pid.get(worker.process.popen.pid, 0)
    return Outcome(
        rate,
        seconds,
        result.percentile(95),
        sent_at,
        drained_at,
        runs,
        events,
        problems,
        sum(positions.last.values()),
    )


def _topic(isolation: dict[str, str]) -> str:
    return isolation["QIS_KAFKA__OBSERVATIONS_TOPIC"]


def report(o: Outcome) -> None:
    print(
        f"\nload: {o.rate:,.0f} obs/s for {o.seconds:g} s (P95 {o.p95_ms:.0f} ms); sent by "
        f"{o.sent_at:.1f} s, stored and relayed by {o.drained_at:.1f} s; {o.records:,} "
        f"records, {o.events:,} events"
    )
    print("| worker | ran (s) | ended by | records consumed | records/s while running |")
    print("|---|---|---|---|---|")
    for w in o.runs:
        end = o.drained_at if w.stopped is None else w.stopped
        print(
            f"| {w.name} | {w.started:.1f}-{end:.1f} | {w.how} | {w.records:,} | "
            f"{w.records / (end - w.started):,.0f} |"
        )
    if o.problems:
        print("FAILED:\n- " + "\n- ".join(o.problems))
    else:
        print(
            "PASS: every accepted observation stored once, versions 1..n per snap and "
            "complete, events once each and in order per series"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="observations per second")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    outcome = asyncio.run(scale_out(args.seconds, args.rate, args.workers))
    report(outcome)
    sys.exit(1 if outcome.problems else 0)


if __name__ == "__main__":
    main()
