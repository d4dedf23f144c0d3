"""The lake archive's searches for hours with rows (migration 0010): their plans and times
on a filled database, and what the two new observations indexes cost an insert
(benchmarks/results/lake-gaps.md).

    .venv/bin/python -m benchmarks.lake_gaps [--rows 600000] [--runs 50]

Works in a database of its own (created and dropped), never the shared `qis`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from app.adapters.postgres import archive
from app.adapters.postgres.migrate import create_migrated_database
from app.settings import load_settings

_INSERT = """
    INSERT INTO {table} (observation_id, reference_data_id, source, snap, value, observed_at,
                         received_at, stored_at)
    SELECT 'o' || g || '-' || $3, 'S' || (g % 500), 'src',
           $1::timestamptz + (g % 240) * interval '1 hour' + (g % 60) * interval '1 minute',
           1, now(), now(), now() - interval '1 day'
      FROM generate_series(1, $2) g"""


async def fill(conn: asyncpg.Connection, day0: datetime, rows: int) -> None:
    today = datetime.now(UTC).date()
    for table, key in (("observations", "snap"), ("audit_log", "at")):
        await conn.execute(
            "SELECT qis_ensure_day_partitions($1, $2, $3, $4)",
            table,
            key,
            day0.date(),
            today + timedelta(days=2),
        )
    await conn.execute(_INSERT.format(table="observations"), day0, rows, "fill")
    await conn.execute(
        """INSERT INTO observations (observation_id, reference_data_id, source, snap, value,
                                    observed_at, received_at, stored_at)
           VALUES ('o1970', 'S1', 'src', '1970-01-01T00:05Z', 1, now(), now(), now())"""
    )
    await conn.execute(
        """INSERT INTO official_values (reference_data_id, snap, version, value, status, method,
               sources_used, sources_excluded, quality_score, completeness, timeliness,
               consistency, validity, recorded_at)
           SELECT 'S' || (g % 500), $1::timestamptz + (g / 500) * interval '1 minute', 1, 1,
                  'official', 'median', '{}', '[]', 1, 1, 1, 1, 1, now() - interval '1 day'
             FROM generate_series(0, $2 / 3) g""",
        day0,
        rows,
    )
    await conn.execute(
        """INSERT INTO audit_log (actor, action, entity_type, entity_id, at, prev_hash, hash)
           SELECT 'a', 'x', 'x', g::text, $1::timestamptz + g * interval '8 seconds', 'p',
                  'h' || g
             FROM generate_series(1, $2 / 6) g""",
        day0,
        rows,
    )
    await conn.execute(
        """INSERT INTO lake_hours (hour, generation, archived_at)
           SELECT $1::timestamptz + g * interval '1 hour', 1, now() - interval '1 hour'
             FROM generate_series(0, 100) g""",
        day0,
    )
    await conn.execute("INSERT INTO lake_archive VALUES (true, now() - interval '1 hour')")
    await conn.execute("ANALYZE observations, official_values, audit_log, lake_hours")


async def timed(conn: asyncpg.Connection, sql: str, args: tuple[object, ...], runs: int) -> float:
    stmt = await conn.prepare(sql)
    await stmt.fetch(*args)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await stmt.fetch(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


async def insert_cost(conn: asyncpg.Connection, day0: datetime, rows: int) -> dict[str, float]:
    """Seconds to insert `rows` observations into a day table with and without the indexes
    (median of three runs each, alternating)."""
    out: dict[str, list[float]] = {"without": [], "with": []}
    for label, indexes in (("without", False), ("with", True)) * 3:
        await conn.execute("DROP TABLE IF EXISTS bench_obs")
        await conn.execute(
            "CREATE TABLE bench_obs (LIKE observations INCLUDING DEFAULTS, "
            "PRIMARY KEY (reference_data_id, snap, observation_id))"
        )
        if indexes:
            await conn.execute("CREATE INDEX ON bench_obs (snap)")
            await conn.execute("CREATE INDEX ON bench_obs (stored_at)")
        started = time.perf_counter()
        await conn.execute(_INSERT.format(table="bench_obs"), day0, rows, label)
        out[label].append(time.perf_counter() - started)
    await conn.execute("DROP TABLE bench_obs")
    return {label: statistics.median(times) for label, times in out.items()}


async def main(rows: int, runs: int) -> None:
    settings = load_settings(os.environ)
    name = f"qis_bench_gaps_{uuid.uuid4().hex[:8]}"
    dsn = await create_migrated_database(settings.db.writer_dsn, name, fresh=True)
    now = datetime.now(UTC)
    day0 = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=11)
    conn = await asyncpg.connect(dsn)
    try:
        await fill(conn, day0, rows)
        until = now - timedelta(hours=1)
        cases = {
            "next hour with rows, from the beginning (a 1970 row)": (
                archive._NEXT_DATA,
                (None, until),
            ),
            "next hour with rows after 1970 (56 years of empty hours)": (
                archive._NEXT_DATA,
                (datetime(1970, 1, 1, tzinfo=UTC), until),
            ),
            "next hour with rows after the last one (none)": (
                archive._NEXT_DATA,
                (day0 + timedelta(days=10), until),
            ),
            "late rows in skipped hours (none stored since the check)": (
                archive._LATE_ROWS,
                (day0 + timedelta(hours=101), 24, datetime(2000, 1, 1, tzinfo=UTC)),
            ),
        }
        print(f"{rows} observations in 10 day partitions, {rows // 3} versions, {rows // 6} audit")
        for label, (sql, args) in cases.items():
            plan = [
                r[0].strip().removeprefix("->  ")
                for r in await conn.fetch("EXPLAIN (COSTS OFF) " + sql, *args)
            ]
            index = sum(1 for line in plan if line.startswith(("Index Scan", "Index Only Scan")))
            seq = sorted(
                line.split(" on ")[1].split()[0] for line in plan if line.startswith("Seq Scan")
            )
            median = await timed(conn, sql, args, runs)
            print(f"{label}: median {median:.0f} µs; {index} index scans; seq scans: {seq}")
        cost = await insert_cost(conn, day0, rows // 6)
        print(
            f"insert {rows // 6} observations: {cost['without']:.2f} s without the snap and"
            f" stored_at indexes, {cost['with']:.2f} s with them"
        )
    finally:
        await conn.close()
        admin = await asyncpg.connect(settings.db.writer_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=600_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.runs))
