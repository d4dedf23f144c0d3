"""Day partitions: what the partition count costs the hot queries, and what detaching and
dropping a day of N rows takes (benchmarks/results/partitions.md).

    .venv/bin/python -m benchmarks.partitions [--rows-per-day 50000] [--days 40]

Works in databases of its own (created and dropped), never the shared `qis`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from app.adapters.postgres.migrate import create_migrated_database, drop_database
from app.adapters.postgres.partitions import day_partitions, drop_day
from app.domain.lake import OBSERVATIONS
from app.domain.retention import day_start
from app.settings import load_settings

HOT = {
    "latest audit hash": "SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1",
    "latest audit hash, today's partition first (qis_audit_head)": ("SELECT qis_audit_head(now())"),
    "audit records after a seq": (
        "SELECT seq, hash FROM audit_log WHERE seq > {after} ORDER BY seq LIMIT 500"
    ),
    "observations of one (series, snap)": (
        "SELECT observation_id FROM observations WHERE reference_data_id = 'S7'"
        " AND snap = date_trunc('day', now()) + interval '3 hours'"
    ),
}


async def fill(conn: asyncpg.Connection, days: int, rows_per_day: int) -> None:
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 8)
    await conn.execute(
        "SELECT qis_ensure_day_partitions('observations', 'snap', $1, $2)",
        first,
        today + timedelta(days=7),
    )
    await conn.execute(
        "SELECT qis_ensure_day_partitions('audit_log', 'at', $1, $2)",
        first,
        today + timedelta(days=7),
    )
    for d in range(days - 7):
        start = day_start(first + timedelta(days=d))
        await conn.execute(
            """INSERT INTO observations (observation_id, reference_data_id, source, snap, value,
                                        observed_at, received_at)
               SELECT md5(i::text || $1::timestamptz::text), 'S' || (i % 100), 'src',
                      $1::timestamptz + (i % 1440) * interval '1 minute', i, $1, $1
                 FROM generate_series(1, $2) i""",
            start,
            rows_per_day,
        )
        await conn.execute(
            """INSERT INTO audit_log (actor, action, entity_type, entity_id, at, prev_hash, hash)
               SELECT 'bench', 'x', 'series', 'S' || (i % 100),
                      $1::timestamptz + i * interval '1 second' * (86000.0 / $2), '', md5(i::text)
                 FROM generate_series(1, $2 / 10) i""",
            start,
            rows_per_day,
        )
    await conn.execute("ANALYZE")


async def timed(conn: asyncpg.Connection, sql: str, n: int = 300) -> float:
    stmt = await conn.prepare(sql)
    for _ in range(20):
        await stmt.fetch()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await stmt.fetch()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


async def plans(conn: asyncpg.Connection) -> dict[str, str]:
    out = {}
    for name, sql in HOT.items():
        sql = sql.replace("{after}", "0")
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) {sql}")
        out[name] = "\n".join(r[0] for r in rows)
    batch = json.dumps(
        [
            {
                "observation_id": uuid.uuid4().hex,
                "reference_data_id": f"S{i}",
                "source": "src",
                "snap": datetime.now(UTC).isoformat(),
                "value": 1.0,
                "observed_at": datetime.now(UTC).isoformat(),
                "received_at": datetime.now(UTC).isoformat(),
            }
            for i in range(500)
        ]
    )
    try:
        async with conn.transaction():  # rolled back: the plans only
            await _write_plans(conn, batch, out)
            raise _Rollback
    except _Rollback:
        pass
    return out


async def _write_plans(conn: asyncpg.Connection, batch: str, out: dict[str, str]) -> None:
    rows = await conn.fetch(
        """EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
           INSERT INTO observations
               (observation_id, reference_data_id, source, snap, value, observed_at,
                received_at, attributes)
           SELECT observation_id, reference_data_id, source, snap, value, observed_at,
                  received_at, attributes
             FROM json_populate_recordset(NULL::observations, $1::json)
           ON CONFLICT (reference_data_id, snap, observation_id) DO NOTHING
           RETURNING observation_id""",
        batch,
    )
    out["insert 500 observations (json_populate_recordset)"] = "\n".join(r[0] for r in rows)
    rows = await conn.fetch(
        """EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
           SELECT o.observation_id FROM observations o
             JOIN unnest($1::text[], $2::timestamptz[]) AS k(series, snap)
               ON o.reference_data_id = k.series AND o.snap = k.snap""",
        [f"S{i}" for i in range(50)],
        [day_start(datetime.now(UTC).date()) + timedelta(hours=3)] * 50,
    )
    out["observations of 50 (series, snap) pairs (unnest join)"] = "\n".join(r[0] for r in rows)


class _Rollback(Exception):
    pass


async def drop_figures(conn: asyncpg.Connection) -> list[dict[str, float | int]]:
    figures = []
    parts = await day_partitions(conn, OBSERVATIONS)
    for part in parts[:3]:
        await conn.execute(
            """INSERT INTO lake_hours (hour, generation, verified_at)
               SELECT h, 1, now() + interval '1 minute'
                 FROM generate_series($1::timestamptz, $1 + interval '23 hours',
                                      interval '1 hour') h
               ON CONFLICT DO NOTHING""",
            part.start,
        )
        size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", part.table)
        t = time.perf_counter()
        await conn.fetchval(f"SELECT count(*) FROM {part.table}")
        counted = time.perf_counter() - t
        t = time.perf_counter()
        dropped = await drop_day(conn, part, lock_timeout_seconds=5.0)
        figures.append(
            {
                "rows": dropped.rows,
                "mb": round(size / 1e6, 1),
                "seconds": round(time.perf_counter() - t, 3),
                # drop_day counts the rows before it locks: the rest holds the lock
                "count seconds": round(counted, 3),
            }
        )
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows-per-day", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=40)
    args = parser.parse_args()
    settings = load_settings(os.environ)
    name = f"qis_bench_partitions_{uuid.uuid4().hex[:8]}"
    dsn = await create_migrated_database(settings.db.writer_dsn, name, fresh=True)
    conn = await asyncpg.connect(dsn)
    try:
        await fill(conn, args.days, args.rows_per_day)
        count = len(await day_partitions(conn, OBSERVATIONS)) + 1
        result: dict[str, object] = {"partitions per table (with default)": count}
        after = str(await conn.fetchval("SELECT max(seq) - 600 FROM audit_log"))
        result["median us"] = {
            k: round(await timed(conn, sql.replace("{after}", after)), 1) for k, sql in HOT.items()
        }
        result["plans"] = await plans(conn)
        result["drop"] = await drop_figures(conn)
        print(json.dumps(result, indent=1, default=str))
    finally:
        await conn.close()
        await drop_database(settings.db.writer_dsn, name)


if __name__ == "__main__":
    asyncio.run(main())
