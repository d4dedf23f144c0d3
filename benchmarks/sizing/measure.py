"""Measure the sizing model's unit costs on a running stack (PostgreSQL and Redis).

Nothing it writes survives it:

- Redis: keys in the seed's patterns (built with the query service's own key functions
  and encoders) under a unique series prefix, with TTLs; `used_memory` growth per key and
  `MEMORY USAGE` of one; then every key is unlinked.
- PostgreSQL, in ONE transaction that is rolled back at the end:
  1. the worker's write path for real: `insert_observations` and the reconciliation
     stage (series lock, reconcile, versions, audit, outbox), batch by batch, each batch
     inside a savepoint rolled back after its rows were copied to temporary tables (so
     the journal lock is held for one batch at a time, like a real worker does). Timed:
     wall clock, this process' CPU (the worker's share) and the backend's CPU from
     /proc (the database's share; only when PostgreSQL runs on this machine);
  2. footprint: the copied rows inserted into scratch clones of the tables (`LIKE ...
     INCLUDING ALL`, so the same indexes) under `EXPLAIN (ANALYZE, WAL)`: bytes of heap
     and of each index per row, WAL bytes per row;
  3. query cost: two days of official values for 20 series inserted into the real table
     (in a savepoint), then each read of the query store repeated: wall time and backend
     CPU per call.
"""

from __future__ import annotations

import json
import os
import platform
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

import asyncpg
import msgspec
import redis.asyncio as redis

from app.adapters.postgres.audit import lock_journal
from app.adapters.postgres.observations import insert_observations
from app.adapters.postgres.pipeline import PostgresPipelineStore
from app.adapters.postgres.queries import PostgresQueries
from app.adapters.postgres.reference_data import create_missing
from app.adapters.redis_cache import GENERATION_TTL_SECONDS
from app.domain.observation import Observation, derive_observation_id
from app.domain.quality import Quality
from app.domain.reading import (
    HistoryItem,
    HistoryPage,
    QualityAverages,
    QualitySummary,
    VersionList,
)
from app.domain.reconciliation import Exclusion
from app.domain.series import SeriesConfig
from app.domain.timestamps import rfc3339
from app.domain.versions import OfficialValue
from app.entrypoints.progress import SILENT, Progress
from app.services.cache import latest_key, scope_key, versions_key
from app.services.journal import Topics
from app.services.reconcile import reconciliation_stage
from app.settings import Settings
from benchmarks.sizing.model import (
    CacheEntrySize,
    Measurements,
    QueryCost,
    TableFootprint,
    WritePath,
)

SOURCES = ("binance", "bitstamp", "coinbase", "kraken", "okx")
TABLES = ("observations", "official_values", "snaps", "audit_log", "outbox")
_json = msgspec.json.Encoder()
_T = TypeVar("_T")


# -- Redis ---------------------------------------------------------------------------------


def _official(series: str, snap: datetime, version: int = 1) -> OfficialValue:
    return OfficialValue(
        reference_data_id=series,
        snap=snap,
        version=version,
        value=3301.13,
        status="official",
        method="median",
        sources_used=SOURCES[:4],
        sources_excluded=(Exclusion(source=SOURCES[4], reason="outlier"),),
        quality=Quality(score=0.8, completeness=1.0, timeliness=1.0, consistency=0.8, validity=1.0),
        supersedes=None if version == 1 else version - 1,
        recorded_at=snap + timedelta(seconds=3, microseconds=412_000),
    )


def _cache_entries(
    series: str, snap: datetime, generation: str
) -> dict[str, tuple[str, bytes, int]]:
    """kind -> (key, value, ttl), as the query service writes each kind to L2."""
    snap_text = rfc3339(snap)
    day = timedelta(days=1)
    page = HistoryPage(
        items=[
            HistoryItem(
                **msgspec.structs.asdict(_official(series, snap + timedelta(minutes=5 * i))),
                bucket=snap + timedelta(minutes=5 * i),
                count=1,
            )
            for i in range(100)
        ],
        next_cursor="eyJzdGFydCI6IjIwMjYtMDEtMTZUMDI6MjA6MDAuMDAwMDAxWiJ9",
    )
    quality = QualitySummary(
        reference_data_id=series,
        from_=snap - day,
        to=snap,
        count=288,
        average_score=0.9875,
        minimum_score=0.6,
        suspect_count=4,
        average_dimensions=QualityAverages(
            completeness=0.998, timeliness=0.995, consistency=0.994, validity=1.0
        ),
    )
    history_key = (
        f"historical:{{{series}}}:{rfc3339(snap - day)}:{snap_text}:raw:{secrets.token_hex(8)}"
    )
    return {
        "official": (latest_key(series, snap_text), _json.encode(_official(series, snap)), 300),
        "version_list": (
            versions_key(series, snap_text),
            _json.encode(VersionList(items=[_official(series, snap), _official(series, snap, 2)])),
            300,
        ),
        "history_page": (f"{history_key}@{generation}", _json.encode(page), 300),
        "quality": (f"quality:{{{series}}}:1d:summary@{generation}", _json.encode(quality), 600),
        "absent": (latest_key(series, rfc3339(snap + day)), b"", 60),
        "scope": (scope_key(series), generation.encode(), GENERATION_TTL_SECONDS),
    }


async def _used_memory(client: redis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def measure_cache(client: redis.Redis, count: int = 2000) -> list[CacheEntrySize]:
    """Per kind of entry: value size, MEMORY USAGE, and used_memory growth per key."""
    prefix = f"SIZING{secrets.token_hex(3).upper()}"
    snap = datetime(2026, 1, 15, 14, tzinfo=UTC)
    results: list[CacheEntrySize] = []
    kinds = list(_cache_entries("X", snap, "0").keys())
    for kind in kinds:
        n = count if kind != "history_page" else max(50, count // 10)
        entries = [
            _cache_entries(f"{prefix}-{i:05d}", snap, secrets.token_hex(6))[kind] for i in range(n)
        ]
        keys = [key for key, _, _ in entries]
        before = await _used_memory(client)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for key, value, ttl in entries:
                    pipe.set(key, value, ex=ttl)
                await pipe.execute()
            after = await _used_memory(client)
            usage = await client.memory_usage(keys[0], samples=0)
        finally:
            for start in range(0, len(keys), 500):
                await client.unlink(*keys[start : start + 500])
        results.append(
            CacheEntrySize(
                kind=kind,
                example_key=keys[0].replace(prefix, "SERIES"),
                value_bytes=len(entries[0][1]),
                memory_usage_bytes=int(usage or 0),
                bytes_per_entry=max(0, after - before) / n,
            )
        )
    return results


# -- PostgreSQL --------------------------------------------------------------------------------


def _local_backend(dsn: str, pid: int) -> int | None:
    """The backend's pid when its CPU time can be read here (/proc, same machine)."""
    host = urlparse(dsn).hostname or "localhost"
    local = host in ("127.0.0.1", "localhost", "::1")
    return pid if local and Path(f"/proc/{pid}/stat").exists() else None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Clock:
    """Wall, own CPU and (when local) the database backend's CPU, accumulated."""

    def __init__(self, backend_pid: int | None) -> None:
        self._pid = backend_pid
        self.wall = self.own = 0.0
        self.db: float | None = 0.0 if backend_pid is not None else None

    async def run(self, work: Callable[[], Awaitable[_T]]) -> _T:
        w, c = time.perf_counter(), time.process_time()
        d = _cpu_seconds(self._pid) if self._pid is not None else 0.0
        result = await work()
        self.wall += time.perf_counter() - w
        self.own += time.process_time() - c
        if self._pid is not None and self.db is not None:
            self.db += _cpu_seconds(self._pid) - d
        return result


def _observations(series: list[str], snap: datetime, rng: random.Random) -> list[Observation]:
    """One snap of every series: 5 sources on time; 10 % of snaps carry an outlier."""
    out = []
    for s in series:
        base = 100 + rng.random() * 5000
        outlier = rng.random() < 0.10
        for j, source in enumerate(SOURCES):
            value = round(base * (1 + (rng.random() - 0.5) * 4e-4), 6)
            if outlier and j == len(SOURCES) - 1:
                value = round(value * 1.02, 6)
            observed = snap + timedelta(milliseconds=100 + 40 * j)
            attributes = {"bid": value - 0.5, "ask": value + 0.5} if j % 2 else None
            out.append(
                Observation(
                    observation_id=derive_observation_id(
                        s, source, snap, value, observed, attributes
                    ),
                    reference_data_id=s,
                    source=source,
                    snap=snap,
                    value=value,
                    observed_at=observed,
                    received_at=snap + timedelta(seconds=1),
                    attributes=attributes,
                )
            )
    return out


async def _batch_rows(
    conn: asyncpg.Connection[Any], series: list[str], audit_after: int, outbox_after: int
) -> dict[str, list[asyncpg.Record]]:
    """What this batch wrote, read before its savepoint is rolled back."""
    prefix = series[0].split("-")[0] + "-%"
    queries = {
        "observations": ("SELECT * FROM observations WHERE reference_data_id = ANY($1)", series),
        "official_values": (
            "SELECT * FROM official_values WHERE reference_data_id = ANY($1)",
            series,
        ),
        "snaps": ("SELECT * FROM snaps WHERE reference_data_id = ANY($1)", series),
    }
    rows = {table: await conn.fetch(sql, arg) for table, (sql, arg) in queries.items()}
    rows["audit_log"] = await conn.fetch(
        "SELECT * FROM audit_log WHERE seq > $1 AND entity_id LIKE $2", audit_after, prefix
    )
    rows["outbox"] = await conn.fetch(
        "SELECT * FROM outbox WHERE id > $1 AND key = ANY($2)", outbox_after, series
    )
    return rows


async def _write_path(
    conn: asyncpg.Connection[Any],
    settings: Settings,
    clock: _Clock,
    batches: int,
    series_per_batch: int,
) -> WritePath:
    prefix = f"SZ{secrets.token_hex(3).upper()}"
    series = [f"{prefix}-{i:05d}" for i in range(series_per_batch)]
    await create_missing(
        conn, series, SeriesConfig(expected_sources=SOURCES, min_sources=3, precision=6)
    )
    for table in TABLES:
        await conn.execute(f"CREATE TEMP TABLE sz_{table} (LIKE {table}) ON COMMIT DROP")
    after_store = reconciliation_stage(
        PostgresPipelineStore, topics=Topics.from_settings(settings.kafka)
    )
    rng = random.Random(7)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    observations = 0
    for b in range(batches + 1):  # batch 0 warms up caches and is not counted
        batch = _observations(series, start + timedelta(minutes=5 * b), rng)
        savepoint = conn.transaction()
        await savepoint.start()
        try:
            audit_after = int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM audit_log"))
            outbox_after = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))

            async def work(batch: list[Observation] = batch) -> None:
                stored = set(await insert_observations(conn, batch))
                await after_store(conn, [o for o in batch if o.observation_id in stored], (), {})

            # Queue for the journal lock outside the timed work: other writers of a shared
            # stack may hold it, and waiting is not this batch's cost.
            await lock_journal(conn)
            if b == 0:
                await work()
                continue
            await clock.run(work)
            observations += len(batch)
            written = await _batch_rows(conn, series, audit_after, outbox_after)
        finally:
            await savepoint.rollback()
        for table, rows in written.items():
            if rows:
                await conn.copy_records_to_table(
                    f"sz_{table}", records=[tuple(r.values()) for r in rows]
                )
    counts = {t: int(await conn.fetchval(f"SELECT count(*) FROM sz_{t}")) for t in TABLES}
    return WritePath(
        batches=batches,
        observations=observations,
        versions=counts["official_values"],
        audit_rows=counts["audit_log"],
        outbox_rows=counts["outbox"],
        snap_rows=counts["snaps"],
        wall_seconds=clock.wall,
        worker_cpu_seconds=clock.own,
        db_cpu_seconds=clock.db,
    )


async def _footprints(conn: asyncpg.Connection[Any]) -> list[TableFootprint]:
    schema = f"sizing_{secrets.token_hex(4)}"
    await conn.execute(f"CREATE SCHEMA {schema}")
    out = []
    for table in TABLES:
        await conn.execute(f"CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)")
        plan = json.loads(
            await conn.fetchval(
                f"EXPLAIN (ANALYZE, WAL, FORMAT JSON) INSERT INTO {schema}.{table} "
                f"SELECT * FROM sz_{table}"
            )
        )[0]["Plan"]
        rows = int(await conn.fetchval(f"SELECT count(*) FROM {schema}.{table}"))
        heap = int(await conn.fetchval("SELECT pg_table_size($1::regclass)", f"{schema}.{table}"))
        indexes = {
            str(r["name"]).split(".")[-1]: int(r["bytes"])
            for r in await conn.fetch(
                """SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid) AS bytes
                     FROM pg_index WHERE indrelid = $1::regclass""",
                f"{schema}.{table}",
            )
        }
        out.append(
            TableFootprint(
                table=table,
                rows=rows,
                heap_bytes=heap,
                index_bytes=indexes,
                wal_bytes=int(plan.get("WAL Bytes", 0)),
                wal_records=int(plan.get("WAL Records", 0)),
            )
        )
    return out


async def _query_costs(
    conn: asyncpg.Connection[Any], backend_pid: int | None, seconds: float
) -> list[QueryCost]:
    prefix = f"SZQ{secrets.token_hex(3).upper()}"
    series = [f"{prefix}-{i:05d}" for i in range(20)]
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=3)
    snaps = 576  # two days every 5 minutes
    await conn.execute(
        """INSERT INTO official_values
               (reference_data_id, snap, version, value, status, method, sources_used,
                sources_excluded, quality_score, completeness, timeliness, consistency,
                validity, supersedes, recorded_at)
           SELECT s.id, $2::timestamptz + n * interval '5 minutes', v, t.value + n * 0.01,
                  t.status, t.method, t.sources_used, t.sources_excluded, t.quality_score,
                  t.completeness, t.timeliness, t.consistency, t.validity,
                  CASE WHEN v = 2 THEN 1 END,
                  $2::timestamptz + n * interval '5 minutes' + v * interval '3 seconds'
             FROM (SELECT * FROM sz_official_values LIMIT 1) t,
                  unnest($1::text[]) AS s(id), generate_series(0, $3 - 1) AS n,
                  generate_series(1, 2) AS v
            WHERE v = 1 OR n % 20 = 0""",
        series,
        start,
        snaps,
    )
    store = PostgresQueries(cast(asyncpg.Pool, conn), cast(asyncpg.Pool, conn))
    rng = random.Random(11)

    def snap() -> datetime:
        return start + timedelta(minutes=5 * rng.randrange(snaps - 300))

    async def latest() -> int:
        return 0 if await store.latest(rng.choice(series), snap()) is None else 1

    async def version() -> int:
        return 0 if await store.version(rng.choice(series), snap(), 1) is None else 1

    async def as_of() -> int:
        at = snap()
        found = await store.as_of(rng.choice(series), at, at + timedelta(seconds=4))
        return 0 if found is None else 1

    async def history() -> int:
        at = snap()
        page = await store.history(rng.choice(series), at, at + timedelta(days=1), "raw", None, 101)
        return len(page)

    async def history_1h() -> int:
        at = snap()
        page = await store.history(rng.choice(series), at, at + timedelta(days=1), "1h", None, 101)
        return len(page)

    async def quality() -> int:
        at = snap()
        summary = await store.quality(rng.choice(series), at, at + timedelta(days=1))
        return summary.count

    reads: dict[str, Callable[[], Awaitable[int]]] = {
        "latest": latest,
        "version": version,
        "as_of": as_of,
        "history": history,
        "history_1h": history_1h,
        "quality": quality,
    }
    out = []
    for kind, read in reads.items():
        for _ in range(20):  # warm-up: plans cached, pages in shared buffers
            await read()
        clock = _Clock(backend_pid)
        calls = rows = 0
        while calls < 50 or (clock.wall < seconds and calls < 20_000):
            rows += await clock.run(read)
            calls += 1
        out.append(
            QueryCost(
                kind=kind,
                calls=calls,
                wall_ms=1000 * clock.wall / calls,
                db_cpu_ms=None if clock.db is None else 1000 * clock.db / calls,
                rows=rows / calls,
            )
        )
    return out


async def measure_postgres(
    settings: Settings,
    batches: int = 20,
    series_per_batch: int = 100,
    query_seconds: float = 1.0,
    progress: Progress = SILENT,
) -> tuple[list[TableFootprint], WritePath, list[QueryCost], str]:
    """Write path, footprints and query costs, in one transaction that is rolled back."""
    dsn = settings.db.writer_dsn
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        dsn, command_timeout=max(60.0, settings.db.command_timeout_seconds)
    )
    try:
        version = str(await conn.fetchval("SHOW server_version"))
        pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
        backend = _local_backend(dsn, pid)
        outer = conn.transaction()
        await outer.start()
        try:
            with progress.step("write path (PostgreSQL)"):
                write = await _write_path(
                    conn, settings, _Clock(backend), batches, series_per_batch
                )
            with progress.step("table footprints (PostgreSQL)"):
                tables = await _footprints(conn)
            savepoint = conn.transaction()
            await savepoint.start()
            try:
                with progress.step("query costs (PostgreSQL)"):
                    queries = await _query_costs(conn, backend, query_seconds)
            finally:
                await savepoint.rollback()
        finally:
            await outer.rollback()
    finally:
        await conn.close()
    return tables, write, queries, version


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


MEASURE_STEPS = 4  # the progress steps of `measure`


async def measure(
    settings: Settings, quick: bool = False, progress: Progress = SILENT
) -> Measurements:
    """Every unit cost of the model, from the stack `settings` point at."""
    client = redis.Redis.from_url(settings.redis.url)
    try:
        with progress.step("cache entry sizes (Redis)"):
            cache = await measure_cache(client, count=200 if quick else 2000)
            redis_version = str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()
    tables, write, queries, pg_version = await measure_postgres(
        settings,
        batches=4 if quick else 20,
        series_per_batch=100 if quick else 200,
        query_seconds=0.1 if quick else 1.0,
        progress=progress,
    )
    return Measurements(
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        environment={
            "postgresql": pg_version,
            "redis": redis_version,
            "cpu": _cpu_model(),
            "cores": str(os.cpu_count()),
            "python": platform.python_version(),
            "db_cpu": "backend /proc" if write.db_cpu_seconds is not None else "not local",
        },
        cache_entries=cache,
        tables=tables,
        write_path=write,
        queries=queries,
    )
