"""What the lake archive reads from and records in PostgreSQL (docs/lake.md).

An hour's three datasets are read in one repeatable-read snapshot, streamed in a fixed
order (series, snap, key; `COLLATE "C"`, byte order, whatever the database's collation)
into the lake's formats and fingerprints, so the same rows always give the same bytes.
`lake_hours` records what was archived and when it was last verified.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
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
BATCH_ROWS = 5000
# A configuration stored without the field has the struct's default window.
DEFAULT_WINDOW_SECONDS: int = SeriesConfig().window_seconds


async def _rows(conn: Connection, dataset: str, hour: datetime) -> AsyncIterator[tuple[Any, ...]]:
    async for record in conn.cursor(_QUERIES[dataset], hour, hour + HOUR, prefetch=BATCH_ROWS):
        yield tuple(record.values())


async def _export(
    conn: Connection, dataset: str, hour: datetime, encode: bool, row_group_rows: int
) -> DatasetExport:
    fingerprint = Fingerprint()
    first: str | None = None
    last: str | None = None
    data: bytes | None = None
    if dataset == AUDIT:
        records: list[dict[str, Any]] = []
        async for row in _rows(conn, dataset, hour):
            fingerprint.add(row)
            if encode:
                records.append(dict(zip(_AUDIT_FIELDS, row, strict=True)))
        if encode and records:
            data = audit_avro(records)
    else:
        schema = OFFICIAL_VALUES_SCHEMA if dataset == OFFICIAL_VALUES else OBSERVATIONS_SCHEMA
        builder = ParquetBuilder(schema, row_group_rows) if encode else None
        batch: list[tuple[Any, ...]] = []
        async for row in _rows(conn, dataset, hour):
            fingerprint.add(row)
            first = first or row[0]
            last = row[0]
            if builder is not None:
                batch.append(row)
                if len(batch) >= BATCH_ROWS:
                    builder.add(batch)
                    batch = []
        if builder is not None and fingerprint.rows:
            builder.add(batch)
            data = builder.finish()
    summary = DatasetSummary(rows=fingerprint.rows, fingerprint=fingerprint.hexdigest())
    return DatasetExport(
        dataset=dataset, summary=summary, data=data, first_series=first, last_series=last
    )


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
            # The first statement takes the snapshot; a transaction still open then (its
            # rows invisible here) started before it, and its rows carry a time at or
            # after its start (stored_at's default, recorded_at's clock).
            as_of: datetime = await conn.fetchval(
                """SELECT least(now(), min(xact_start)) FROM pg_stat_activity
                    WHERE xact_start IS NOT NULL AND datname = current_database()"""
            )
            datasets = [
                await _export(conn, d, hour, encode, self._row_group_rows)
                for d in (OFFICIAL_VALUES, OBSERVATIONS, AUDIT)
            ]
            return HourExport(datasets=datasets, as_of=as_of)

    async def oldest_data(self) -> datetime | None:
        """The earliest time any dataset holds (a first run starts at its hour)."""
        async with self._pool.acquire() as conn:
            value: datetime | None = await conn.fetchval(
                """SELECT min(t) FROM (
                       SELECT min(snap) AS t FROM official_values
                       UNION ALL SELECT min(snap) FROM observations
                       UNION ALL SELECT min(at) FROM audit_log) AS m"""
            )
            return value

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

    async def archived_since(self, since: datetime) -> list[tuple[datetime, datetime]]:
        """(hour, archived_at) of the archived hours from `since` on, oldest first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT hour, archived_at FROM lake_hours WHERE hour >= $1 ORDER BY hour", since
            )
            return [(r["hour"], r["archived_at"]) for r in rows]

    async def changed_since(self, hour: datetime, since: datetime) -> bool:
        """Whether a version or an observation of the hour was stored at or after `since`."""
        async with self._pool.acquire() as conn:
            changed: bool = await conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM official_values
                                   WHERE snap >= $1 AND snap < $2 AND recorded_at >= $3)
                       OR EXISTS (SELECT 1 FROM observations
                                   WHERE snap >= $1 AND snap < $2 AND stored_at >= $3)""",
                hour,
                hour + HOUR,
                since,
            )
            return changed

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
