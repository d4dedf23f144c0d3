"""Day partitions of `observations` (by `snap`) and `audit_log` (by `at`), migration 0009.

Partitions are created ahead of time (`ensure_partitions`, by `qis db migrate` and the
scheduler's leader); retention detaches and drops a whole day (`drop_day`) once the lake
holds every hour of it that holds rows (app/services/retention.py). Day bounds are UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from app.domain.lake import AUDIT, OBSERVATIONS, manifest_key
from app.domain.retention import DayPartition, Dropped, LockBusy, RetentionRefused, day_start

if TYPE_CHECKING:
    from app.adapters.postgres import Connection

# dataset (lake_horizon's name) -> (table, partition key)
PARTITIONED = {OBSERVATIONS: ("observations", "snap"), AUDIT: ("audit_log", "at")}
_DAY = re.compile(r"_p(\d{8})$")
# Rows of the default partition get their day's partition only within this many days
# back (as in migration 0009): older or far rows stay in the default.
BACKFILL_DAYS = 400


async def ensure_partitions(
    conn: Connection, today: date, ahead_days: int, *, lock_timeout_seconds: float = 5.0
) -> dict[str, int]:
    """Create the missing day partitions from `today` to `today + ahead_days`, and those of
    recent days whose rows sit in the default partition (moving them out of it); return
    the number created per dataset.

    Creating a partition locks the parent (ACCESS EXCLUSIVE) and scans the default
    partition; `lock_timeout_seconds` bounds the wait for that lock (writers queue behind
    it): on a timeout the error is raised and the next round tries again, days ahead.
    """
    created: dict[str, int] = {}
    for dataset, (table, key) in PARTITIONED.items():
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_seconds * 1000)}ms'")
            count: int = await conn.fetchval(
                "SELECT qis_ensure_day_partitions($1, $2, $3, $4)",
                table,
                key,
                today,
                today + timedelta(days=ahead_days),
            )
            stray = await conn.fetch(
                f"""SELECT DISTINCT ({key} AT TIME ZONE 'UTC')::date AS day
                      FROM {table}_default
                     WHERE {key} >= $1 AND {key} < $2""",
                day_start(today - timedelta(days=BACKFILL_DAYS)),
                day_start(today + timedelta(days=ahead_days + 1)),
            )
            for row in stray:
                count += bool(
                    await conn.fetchval(
                        "SELECT qis_ensure_day_partition($1, $2, $3)", table, key, row["day"]
                    )
                )
        created[dataset] = count
    return created


async def day_partitions(conn: Connection, dataset: str) -> list[DayPartition]:
    """The dataset's day partitions, oldest first (the default partition is not one)."""
    table, _ = PARTITIONED[dataset]
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = $1::regclass""",
        table,
    )
    found = []
    for row in rows:
        match = _DAY.search(row["relname"])
        if match and row["relname"] == f"{table}_p{match[1]}":
            found.append(
                DayPartition(dataset, row["relname"], datetime.strptime(match[1], "%Y%m%d").date())
            )
    return sorted(found, key=lambda p: p.day)


async def default_rows_before(conn: Connection, dataset: str, before: datetime) -> int:
    """Rows of the dataset's default partition older than `before` (kept by retention)."""
    table, key = PARTITIONED[dataset]
    count: int = await conn.fetchval(
        f"SELECT count(*) FROM {table}_default WHERE {key} < $1", before
    )
    return count


async def unverified_hours(conn: Connection, partition: DayPartition) -> list[datetime]:
    """The hours of the day holding a row of the partition whose lake manifest is not
    verified against the database since its newest generation was written: no
    `lake_hours` row, `verified_at` empty, or older than `archived_at`.

    An hour of the partition without rows loses nothing when the day goes, whatever the
    lake holds: the archive writes no generation for an hour without rows, and skips it.
    One probe of the partition's time index per such hour."""
    _, key = PARTITIONED[partition.dataset]
    rows = await conn.fetch(
        f"""SELECT h.hour
              FROM unnest($1::timestamptz[]) AS h(hour)
              LEFT JOIN lake_hours l ON l.hour = h.hour
             WHERE (l.verified_at IS NULL OR l.verified_at < l.archived_at)
               AND EXISTS (SELECT 1 FROM {partition.table} p
                            WHERE p.{key} >= h.hour AND p.{key} < h.hour + interval '1 hour')
             ORDER BY h.hour""",
        partition.hours(),
    )
    return [r["hour"] for r in rows]


async def drop_day(
    conn: Connection, partition: DayPartition, *, lock_timeout_seconds: float
) -> Dropped:
    """Detach and drop one day partition and move the dataset's `lake_horizon` to the
    day's end, in one transaction; for audit, record the checkpoint of the last dropped
    record first. Raises `RetentionRefused` (nothing changed) when an hour of the day is
    not verified once the partition is detached, or, for audit, when a record still in
    the database precedes the last dropped one in the chain.

    DETACH ... CONCURRENTLY is not possible: PostgreSQL refuses it while the table has a
    default partition. The plain DETACH takes an ACCESS EXCLUSIVE lock on the parent
    until commit; `lock_timeout` bounds the wait for it (writers queue behind a waiting
    DETACH), and the transaction after it reads only small tables and indexes. The row
    count reported is taken just before, without that lock.
    """
    table, _ = PARTITIONED[partition.dataset]
    # Counted before the lock (for the report): a scan of the day must not hold writers.
    rows: int = await conn.fetchval(f"SELECT count(*) FROM {partition.table}")
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_seconds * 1000)}ms'")
        try:
            await conn.execute(f"ALTER TABLE {table} DETACH PARTITION {partition.table}")
        except asyncpg.LockNotAvailableError as exc:
            raise LockBusy(f"{partition.table}: {exc}") from exc
        # Detached, the day is static: no insert reaches it any more (a late row of the
        # day goes to the default partition). lake_hours is read under the lock.
        missing = await unverified_hours(conn, partition)
        if missing:
            raise RetentionRefused(
                f"{partition.table}: {len(missing)} hour(s) not verified in the lake,"
                f" first {missing[0].isoformat()}"
            )
        checkpoint = None
        if partition.dataset == AUDIT:
            checkpoint = await _checkpoint(conn, partition)
        await conn.execute(f"DROP TABLE {partition.table}")
        await conn.execute(
            """INSERT INTO lake_horizon (dataset, retained_from) VALUES ($1, $2)
               ON CONFLICT (dataset) DO UPDATE
                 SET retained_from = greatest(lake_horizon.retained_from,
                                              excluded.retained_from),
                     updated_at = now()""",
            partition.dataset,
            partition.end,
        )
    return Dropped(partition, rows, checkpoint)


async def _checkpoint(conn: Connection, partition: DayPartition) -> int | None:
    last = await conn.fetchrow(
        f"SELECT seq, hash, at FROM {partition.table} ORDER BY seq DESC LIMIT 1"
    )
    if last is None:
        return None
    first_kept = await conn.fetchval("SELECT min(seq) FROM audit_log")
    if first_kept is not None and first_kept < last["seq"]:
        raise RetentionRefused(
            f"{partition.table}: audit record {first_kept} stays in the database but"
            f" precedes the last dropped record {last['seq']}"
        )
    hour = last["at"].astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    generation = await conn.fetchval("SELECT generation FROM lake_hours WHERE hour = $1", hour)
    await conn.execute(
        """INSERT INTO audit_checkpoints (seq, hash, at, manifest_key, partition)
           VALUES ($1, $2, $3, $4, $5)""",
        last["seq"],
        last["hash"],
        last["at"],
        manifest_key(hour, generation),
        partition.table,
    )
    seq: int = last["seq"]
    return seq


@dataclass(frozen=True)
class Checkpoint:
    """Where the chain continues after dropped audit partitions: the last dropped record."""

    seq: int
    hash: str
    manifest_key: str


async def latest_checkpoint(conn: Connection) -> Checkpoint | None:
    row = await conn.fetchrow(
        "SELECT seq, hash, manifest_key FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
    )
    return None if row is None else Checkpoint(row["seq"], row["hash"], row["manifest_key"])


class PostgresRetentionStore:
    """`RetentionStore` (app/services/retention.py) on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def partitions(self, dataset: str) -> list[DayPartition]:
        return await day_partitions(self._conn, dataset)

    async def unverified_hours(self, partition: DayPartition) -> list[datetime]:
        return await unverified_hours(self._conn, partition)

    async def default_rows_before(self, dataset: str, before: datetime) -> int:
        return await default_rows_before(self._conn, dataset, before)

    async def drop(self, partition: DayPartition, lock_timeout_seconds: float) -> Dropped:
        return await drop_day(self._conn, partition, lock_timeout_seconds=lock_timeout_seconds)
