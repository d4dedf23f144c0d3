"""The lake archive's searches for hours with rows (migration 0010): their plans and times
on a filled database with the migration's BRIN indexes and again with B-trees on the same
columns, and what each kind costs an insert of observations
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
from app.adapters.postgres.migrate import create_migrated_database, drop_database
from app.settings import load_settings

_INSERT = """
    INSERT INTO {table} (observation_id, reference_data_id, source, snap, value, observed_at,
                         received_at, stored_at)
    SELECT 'o' || g || '-' || $3, 'S' || (g % 500), 'src',
           $1::timestamptz + (g % 240) * interval '1 hour' + (g % 60) * interval '1 minute',
           1, now(), now(), now() - interval '1 day'
      FROM generate_series(1, $2) g
     ORDER BY 4"""


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
    # Summarizes the BRIN ranges, as autovacuum does (autosummarize) after live inserts.
    await conn.execute("VACUUM ANALYZE observations, official_values, audit_log, lake_hours")


async def timed(conn: asyncpg.Connection, sql: str, args: tuple[object, ...], runs: int) -> float:
    stmt = await conn.prepare(sql)
    await stmt.fetch(*args)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await stmt.fetch(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


_INDEXES = (
    ("official_values", "snap"),
    ("observations", "snap"),
    ("audit_log", "at"),
    ("official_values", "recorded_at"),
    ("observations", "stored_at"),
)


async def insert_cost(conn: asyncpg.Connection, day0: datetime, rows: int) -> dict[str, float]:
    """Seconds to insert `rows` observations into a day table without the `snap` and
    `stored_at` indexes, with them as B-trees, and as the migration's BRIN indexes (median
    of three runs each, interleaved)."""
    out: dict[str, list[float]] = {"none": [], "btree": [], "brin": []}
    for kind in ("none", "btree", "brin") * 3:
        await conn.execute("DROP TABLE IF EXISTS bench_obs")
        await conn.execute(
            "CREATE TABLE bench_obs (LIKE observations INCLUDING DEFAULTS, "
            "PRIMARY KEY (reference_data_id, snap, observation_id))"
        )
        for column in ("snap", "stored_at"):
            if kind == "btree":
                await conn.execute(f"CREATE INDEX ON bench_obs ({column})")
            elif kind == "brin":
                await conn.execute(
                    f"CREATE INDEX ON bench_obs USING brin ({column}) "
                    "WITH (pages_per_range = 32, autosummarize = on)"
                )
        started = time.perf_counter()
        await conn.execute(_INSERT.format(table="bench_obs"), day0, rows, kind)
        out[kind].append(time.perf_counter() - started)
    await conn.execute("DROP TABLE bench_obs")
    return {kind: statistics.median(times) for kind, times in out.items()}


async def report(
    conn: asyncpg.Connection,
    cases: dict[str, tuple[str, tuple[object, ...]]],
    runs: int,
) -> None:
    for label, (sql, args) in cases.items():
        plan = [
            r[0].strip().removeprefix("->  ")
            for r in await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + sql, *args)
        ]
        scans = sorted(
            {
                line.split(" on ")[0]
                for line in plan
                if " on " in line and "Scan" in line.split(" on ")[0]
            }
        )
        executed = next(line for line in plan if line.startswith("Execution Time"))
        median = await timed(conn, sql, args, runs)
        print(f"  {label}: median {median:.0f} µs round trip; {executed}; scans: {scans}")


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
        hour5 = day0 + timedelta(hours=5)
        cases: dict[str, tuple[str, tuple[object, ...]]] = {
            "contiguous: any row in the next hour (EXISTS, found)": (
                archive._ANY_DATA,
                (hour5, hour5 + timedelta(hours=1)),
            ),
            "contiguous: min() from the next hour (what a B-tree answers)": (
                archive._NEXT_DATA,
                (hour5, until),
            ),
            "gap: any row in the hour after 1970 (EXISTS, none)": (
                archive._ANY_DATA,
                (datetime(1970, 1, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 2, tzinfo=UTC)),
            ),
            "gap: min() from the hour after 1970 (56 years of empty hours)": (
                archive._NEXT_DATA,
                (datetime(1970, 1, 1, 1, tzinfo=UTC), until),
            ),
            "from the beginning: min() (finds 1970)": (archive._NEXT_DATA, (None, until)),
            "after the newest hour with rows: min() (none)": (
                archive._NEXT_DATA,
                (day0 + timedelta(days=10), until),
            ),
            "late rows in skipped hours (none stored since the check)": (
                archive._LATE_ROWS,
                (day0 + timedelta(hours=101), 24, datetime(2000, 1, 1, tzinfo=UTC)),
            ),
        }
        print(f"{rows} observations in 10 day partitions, {rows // 3} versions, {rows // 6} audit")
        print("BRIN indexes (migration 0010):")
        await report(conn, cases, runs)
        for table, column in _INDEXES:
            await conn.execute(f"CREATE INDEX bench_btree_{table}_{column} ON {table} ({column})")
        await conn.execute("ANALYZE observations, official_values, audit_log")
        print("B-tree indexes on the same columns (added next to the BRIN ones):")
        await report(conn, cases, runs)
        cost = await insert_cost(conn, day0, rows // 6)
        print(
            f"insert {rows // 6} observations: {cost['none']:.2f} s without the snap and"
            f" stored_at indexes, {cost['btree']:.2f} s with B-trees,"
            f" {cost['brin']:.2f} s with BRIN"
        )
    finally:
        await conn.close()
        await drop_database(settings.db.writer_dsn, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=600_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.runs))
