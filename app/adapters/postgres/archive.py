"""What the lake archive reads from and records in PostgreSQL (docs/lake.md).

An hour's three datasets are read in one repeatable-read snapshot, streamed in a fixed
order (series, snap, key; `COLLATE "C"`, byte order, whatever the database's collation)
into the lake's formats and fingerprints, so the same rows always give the same bytes.
`lake_hours` records what was archived and when it was last verified.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from app.adapters.lake_formats import (
    OBSERVATIONS_SCHEMA,
    OFFICIAL_VALUES_SCHEMA,
    Fingerprint,
    ParquetBuilder,
    audit_avro,
)
from app.adapters.postgres.official_values import QUALITY_FIELDS, quality_column
from app.domain.lake import (
    AUDIT,
    HOUR,
    OBSERVATIONS,
    OFFICIAL_VALUES,
    DatasetExport,
    DatasetSummary,
    HourExport,
    hour_of,
)
from app.domain.series import SeriesConfig

if TYPE_CHECKING:
    import asyncpg

    from app.adapters.postgres import Connection

_QUALITY = ", ".join(quality_column(f) for f in QUALITY_FIELDS)

_QUERIES = {
    OFFICIAL_VALUES: f"""
        SELECT reference_data_id, snap, version, value, status, method, sources_used,
               sources_excluded::text, {_QUALITY}, supersedes, recorded_at
          FROM official_values WHERE snap >= $1 AND snap < $2
         ORDER BY reference_data_id COLLATE "C", snap, version""",
    OBSERVATIONS: """
        SELECT reference_data_id, snap, observation_id, source, value, observed_at,
               received_at, attributes::text, stored_at
          FROM observations WHERE snap >= $1 AND snap < $2
         ORDER BY reference_data_id COLLATE "C", snap, observation_id COLLATE "C" """,
    AUDIT: """
        SELECT seq, actor, action, entity_type, entity_id, before::text, after::text, at,
               prev_hash, hash
          FROM audit_log WHERE at >= $1 AND at < $2 ORDER BY seq""",
}
_AUDIT_FIELDS = (
    "seq",
    "actor",
    "action",
    "entity_type",
    "entity_id",
    "before",
    "after",
    "at",
    "prev_hash",
    "hash",
)
# Whether any dataset holds a row in [$1, $2) (one hour: the common case, live data has
# rows in the next hour). With the BRIN indexes of migration 0010 each EXISTS reads the
# index's few pages and stops at the first matching row.
_ANY_DATA = """
    SELECT EXISTS (SELECT 1 FROM official_values WHERE snap >= $1 AND snap < $2)
        OR EXISTS (SELECT 1 FROM observations WHERE snap >= $1 AND snap < $2)
        OR EXISTS (SELECT 1 FROM audit_log WHERE at >= $1 AND at < $2)"""
# The earliest time of any dataset in [$1, $2) ($1 NULL: from the beginning); least()
# skips the datasets with none. A BRIN index cannot return rows in order: each min() is
# a bitmap scan of the block ranges that can hold such times (once per gap).
_NEXT_DATA = """
    SELECT least(
        (SELECT min(snap) FROM official_values
          WHERE snap >= coalesce($1::timestamptz, '-infinity') AND snap < $2),
        (SELECT min(snap) FROM observations
          WHERE snap >= coalesce($1::timestamptz, '-infinity') AND snap < $2),
        (SELECT min(at) FROM audit_log
          WHERE at >= coalesce($1::timestamptz, '-infinity') AND at < $2))"""
# Hours before $1 without a lake_hours row holding a row stored at or after the gaps'
# check (versions by recorded_at, observations by stored_at, audit records by at, the
# database clock when stored): ranges of the stored-time indexes, the rows of a round.
_LATE_ROWS = """
    WITH since AS (
        SELECT coalesce((SELECT gaps_checked_at FROM lake_archive),
                        (SELECT min(archived_at) FROM lake_hours)) AS t),
    late AS (
        SELECT date_bin('1 hour', snap, $3) AS hour FROM official_values
         WHERE recorded_at >= (SELECT t FROM since) AND snap < $1
        UNION
        SELECT date_bin('1 hour', snap, $3) FROM observations
         WHERE stored_at >= (SELECT t FROM since) AND snap < $1
        UNION
        SELECT date_bin('1 hour', at, $3) FROM audit_log
         WHERE at >= (SELECT t FROM since) AND at < $1)
    SELECT hour FROM late
     WHERE NOT EXISTS (SELECT 1 FROM lake_hours l WHERE l.hour = late.hour)
     ORDER BY hour LIMIT $2"""
BATCH_ROWS = 5000
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # date_bin's origin: whole UTC hours
# A configuration stored without the field has the struct's default window.
DEFAULT_WINDOW_SECONDS: int = SeriesConfig().window_seconds


async def _batches(
    conn: Connection, dataset: str, hour: datetime
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The hour's rows of `dataset` in their fixed order, `BATCH_ROWS` at a time."""
    cursor = await conn.cursor(_QUERIES[dataset], hour, hour + HOUR)
    while batch := await cursor.fetch(BATCH_ROWS):
        yield [tuple(r.values()) for r in batch]


async def _export(
    conn: Connection, dataset: str, hour: datetime, encode: bool, row_group_rows: int
) -> DatasetExport:
    fingerprint = Fingerprint()
    first: str | None = None
    last: str | None = None
    data: bytes | None = None
    if dataset == AUDIT:
        records: list[dict[str, Any]] = []
        async for batch in _batches(conn, dataset, hour):
            for row in batch:
                fingerprint.add(row)
            if encode:
                records.extend(dict(zip(_AUDIT_FIELDS, row, strict=True)) for row in batch)
        if encode and records:
            data = audit_avro(records)
    else:
        schema = OFFICIAL_VALUES_SCHEMA if dataset == OFFICIAL_VALUES else OBSERVATIONS_SCHEMA
        builder = ParquetBuilder(schema, row_group_rows) if encode else None
        async for batch in _batches(conn, dataset, hour):
            for row in batch:
                fingerprint.add(row)
            first = first or batch[0][0]
            last = batch[-1][0]
            if builder is not None:
                builder.add(batch)
        if builder is not None and fingerprint.rows:
            data = builder.finish()
    summary = DatasetSummary(rows=fingerprint.rows, fingerprint=fingerprint.hexdigest())
    return DatasetExport(
        dataset=dataset, summary=summary, data=data, first_series=first, last_series=last
    )


async def _snapshot_as_of(conn: Connection) -> datetime:
    """In a repeatable-read transaction, as its first statement (which takes the
    snapshot): the start of the oldest transaction open then. A transaction still open
    (its rows invisible here) started at or after it, and its rows carry a time at or
    after its start (stored_at's default, recorded_at's and at's clock): every row stored
    before it is visible."""
    value: datetime = await conn.fetchval(
        """SELECT least(now(), min(xact_start)) FROM pg_stat_activity
            WHERE xact_start IS NOT NULL AND datname = current_database()"""
    )
    return value


class PostgresArchiveSource:
    """The archive's database side over a pool (`ArchiveSource` of app/services/archive)."""

    def __init__(self, pool: asyncpg.Pool, row_group_rows: int) -> None:
        self._pool = pool
        self._row_group_rows = row_group_rows

    async def export_hour(self, hour: datetime, *, encode: bool) -> HourExport:
        """The hour's three datasets from one snapshot; `encode=False`: summaries only."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            as_of = await _snapshot_as_of(conn)
            datasets = [
                await _export(conn, d, hour, encode, self._row_group_rows)
                for d in (OFFICIAL_VALUES, OBSERVATIONS, AUDIT)
            ]
            return HourExport(datasets=datasets, as_of=as_of)

    async def next_data_hour(self, after: datetime | None, before: datetime) -> datetime | None:
        """The first hour after `after` (None: from the beginning) and before `before`
        holding a row of any dataset; None when there is none. First whether the next hour
        holds a row (the common case), else `min()` from there on; both use the BRIN time
        indexes (`official_values_snap`, `observations_snap`, `audit_log_at`)."""
        start = None if after is None else after + HOUR
        async with self._pool.acquire() as conn:
            if (
                start is not None
                and start == hour_of(start)
                and start + HOUR <= before
                and await conn.fetchval(_ANY_DATA, start, start + HOUR)
            ):
                return start
            value: datetime | None = await conn.fetchval(_NEXT_DATA, start, before)
        return None if value is None else hour_of(value)

    async def late_rows(self, until: datetime, limit: int) -> tuple[list[datetime], datetime]:
        """The hours before `until` with no `lake_hours` row holding a row stored at or
        after `lake_archive.gaps_checked_at` (at most `limit`, oldest first), and the time
        every row stored before is visible to this read (see `_snapshot_as_of`)."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            as_of = await _snapshot_as_of(conn)
            if limit <= 0:
                return [], as_of
            rows = await conn.fetch(_LATE_ROWS, until, limit, _EPOCH)
            return [r["hour"] for r in rows], as_of

    async def record_gaps_checked(self, as_of: datetime) -> None:
        """Every row stored before `as_of` of an hour up to the newest archived one is in an
        archived hour (`lake_archive.gaps_checked_at`, which only moves forward)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO lake_archive (gaps_checked_at) VALUES ($1)
                   ON CONFLICT (singleton) DO UPDATE
                      SET gaps_checked_at = greatest(lake_archive.gaps_checked_at,
                                                     excluded.gaps_checked_at)""",
                as_of,
            )

    async def newest_archived(self) -> datetime | None:
        async with self._pool.acquire() as conn:
            value: datetime | None = await conn.fetchval("SELECT max(hour) FROM lake_hours")
            return value

    async def archived(self, hour: datetime) -> tuple[int, datetime] | None:
        """(generation, archived_at) of an archived hour, None when not archived."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT generation, archived_at FROM lake_hours WHERE hour = $1", hour
            )
            return None if row is None else (row["generation"], row["archived_at"])

    async def changed_hours(self, since: datetime) -> list[datetime]:
        """Archived hours from `since` on with a version (`recorded_at`) or an observation
        (`stored_at`) at or after their `archived_at`, oldest first. One pass over each
        table's rows from `since` on (with time partitions, only those partitions)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """WITH archived AS (
                       SELECT hour, archived_at FROM lake_hours WHERE hour >= $1),
                   oldest AS (SELECT min(archived_at) AS t FROM archived),
                   stored AS (
                       SELECT date_bin('1 hour', snap, $2) AS hour, max(recorded_at) AS t
                         FROM official_values, oldest
                        WHERE snap >= $1 AND recorded_at >= oldest.t GROUP BY 1
                       UNION ALL
                       SELECT date_bin('1 hour', snap, $2), max(stored_at)
                         FROM observations, oldest
                        WHERE snap >= $1 AND stored_at >= oldest.t GROUP BY 1)
                   SELECT DISTINCT a.hour FROM archived a
                     JOIN stored s ON s.hour = a.hour AND s.t >= a.archived_at
                    ORDER BY a.hour""",
                since,
                _EPOCH,
            )
            return [r["hour"] for r in rows]

    async def record_archived(self, hour: datetime, generation: int, as_of: datetime) -> None:
        """The hour's newest generation, holding every row stored before `as_of`
        (`archived_at`); a new generation clears `verified_at`."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO lake_hours (hour, generation, archived_at) VALUES ($1, $2, $3)
                   ON CONFLICT (hour) DO UPDATE
                      SET generation = excluded.generation,
                          archived_at = greatest(lake_hours.archived_at, excluded.archived_at),
                          verified_at = CASE WHEN lake_hours.generation = excluded.generation
                                             THEN lake_hours.verified_at END""",
                hour,
                generation,
                as_of,
            )

    async def record_verified(self, hour: datetime, ok: bool) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                """UPDATE lake_hours SET verified_at = CASE WHEN $2 THEN now() END
                    WHERE hour = $1""",
                hour,
                ok,
            )

    async def retained_from(self) -> dict[str, datetime]:
        """Per dataset, the time before which retention dropped its rows (`lake_horizon`)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT dataset, retained_from FROM lake_horizon")
            return {r["dataset"]: r["retained_from"] for r in rows}

    async def max_window_seconds(self) -> int:
        """The longest reconciliation window any series is configured with (0: none)."""
        async with self._pool.acquire() as conn:
            value = await conn.fetchval(
                """SELECT coalesce(max(coalesce((config->>'window_seconds')::int, $1)), 0)
                     FROM reference_data""",
                DEFAULT_WINDOW_SECONDS,
            )
            return int(value or 0)


__all__ = ["PostgresArchiveSource"]
