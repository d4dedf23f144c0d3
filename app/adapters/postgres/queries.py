"""Reader-side SQL of the query service: official values, versions, history, lineage, quality.

Every query runs on the reader pool (the Aurora reader endpoint in production) except
`latest(..., primary=True)`, which the cache uses when a reader still lags a version the
writer has just announced. "Latest version per snap" is `DISTINCT ON (snap) ... ORDER BY
snap, version DESC`, which PostgreSQL serves from the primary key with an incremental
sort, so a page reads about `limit` snaps, not the whole range.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from app.adapters.postgres.observations import observation_from_row
from app.adapters.postgres.official_values import (
    official_value_from_row,
    quality_column,
    version_columns,
)
from app.domain.observation import Observation
from app.domain.quality import SCORE_DECIMALS
from app.domain.reading import Granularity, HistoryItem, QualityAverages, QualitySummary
from app.domain.versions import OfficialValue

if TYPE_CHECKING:
    from asyncpg import Record


_COLUMNS = version_columns()
_UNIT: dict[Granularity, str] = {"1m": "minute", "1h": "hour", "1d": "day"}

_LATEST = f"""
SELECT {_COLUMNS} FROM official_values
WHERE reference_data_id = $1 AND snap = $2
ORDER BY version DESC LIMIT 1"""

_VERSION = f"""
SELECT {_COLUMNS} FROM official_values
WHERE reference_data_id = $1 AND snap = $2 AND version = $3"""

_AS_OF = f"""
SELECT {_COLUMNS} FROM official_values
WHERE reference_data_id = $1 AND snap = $2 AND recorded_at <= $3
ORDER BY version DESC LIMIT 1"""

_VERSIONS = f"""
SELECT {_COLUMNS} FROM official_values
WHERE reference_data_id = $1 AND snap = $2
ORDER BY version"""

# $1 series, $2 from (inclusive), $3 to (exclusive), $4 as_of or NULL, $5 limit.
_KNOWN = "($4::timestamptz IS NULL OR recorded_at <= $4)"

_HISTORY_RAW = f"""
SELECT DISTINCT ON (snap) {_COLUMNS} FROM official_values
WHERE reference_data_id = $1 AND snap >= $2 AND snap < $3 AND {_KNOWN}
ORDER BY snap, version DESC
LIMIT $5"""

# $6: date_trunc unit; buckets are aligned in UTC whatever the session time zone is.
_HISTORY_BUCKETS = f"""
WITH latest AS (
    SELECT DISTINCT ON (snap) {_COLUMNS}, date_trunc($6, snap, 'UTC') AS bucket
    FROM official_values
    WHERE reference_data_id = $1 AND snap >= $2 AND snap < $3 AND {_KNOWN}
    ORDER BY snap, version DESC
)
SELECT DISTINCT ON (bucket) *, count(*) OVER (PARTITION BY bucket) AS count
FROM latest
ORDER BY bucket, snap DESC
LIMIT $5"""

_OBSERVATIONS = """
SELECT observation_id, reference_data_id, source, snap, value, observed_at, received_at,
       attributes::text AS attributes
FROM observations
WHERE reference_data_id = $1 AND snap = $2
  AND ($3::timestamptz IS NULL OR (received_at, observation_id) > ($3, $4))
ORDER BY received_at, observation_id
LIMIT $5"""

_QUALITY = f"""
WITH latest AS (
    SELECT DISTINCT ON (snap) status, {quality_column("score")} AS score,
           {quality_column("completeness")} AS completeness,
           {quality_column("timeliness")} AS timeliness,
           {quality_column("consistency")} AS consistency,
           {quality_column("validity")} AS validity
    FROM official_values
    WHERE reference_data_id = $1 AND snap >= $2 AND snap < $3
    ORDER BY snap, version DESC
)
SELECT count(*) AS count,
       avg(score) AS average_score,
       min(score) AS minimum_score,
       count(*) FILTER (WHERE status = 'suspect') AS suspect_count,
       avg(completeness) AS completeness,
       avg(timeliness) AS timeliness,
       avg(consistency) AS consistency,
       avg(validity) AS validity
FROM latest"""


def _history_item(row: Record, bucketed: bool) -> HistoryItem:
    value = official_value_from_row(row)
    return HistoryItem(
        **msgspec.structs.asdict(value),
        bucket=row["bucket"] if bucketed else value.snap,
        count=row["count"] if bucketed else 1,
    )


class PostgresQueries:
    """The query service's reads (`QueryStore`): reader pool, primary pool for lagging reads."""

    def __init__(self, reader: asyncpg.Pool, primary: asyncpg.Pool) -> None:
        self._reader = reader
        self._primary = primary

    async def latest(
        self, series: str, snap: datetime, *, primary: bool = False
    ) -> OfficialValue | None:
        pool = self._primary if primary else self._reader
        row = await pool.fetchrow(_LATEST, series, snap)
        return None if row is None else official_value_from_row(row)

    async def version(self, series: str, snap: datetime, version: int) -> OfficialValue | None:
        row = await self._reader.fetchrow(_VERSION, series, snap, version)
        return None if row is None else official_value_from_row(row)

    async def as_of(self, series: str, snap: datetime, as_of: datetime) -> OfficialValue | None:
        row = await self._reader.fetchrow(_AS_OF, series, snap, as_of)
        return None if row is None else official_value_from_row(row)

    async def versions(self, series: str, snap: datetime) -> list[OfficialValue]:
        return [
            official_value_from_row(r) for r in await self._reader.fetch(_VERSIONS, series, snap)
        ]

    async def history(
        self,
        series: str,
        start: datetime,
        end: datetime,
        granularity: Granularity,
        as_of: datetime | None,
        limit: int,
    ) -> list[HistoryItem]:
        """Up to `limit` points with `start <= snap < end` (bucket starts, when bucketed)."""
        if granularity == "raw":
            rows = await self._reader.fetch(_HISTORY_RAW, series, start, end, as_of, limit)
            return [_history_item(r, bucketed=False) for r in rows]
        rows = await self._reader.fetch(
            _HISTORY_BUCKETS, series, start, end, as_of, limit, _UNIT[granularity]
        )
        return [_history_item(r, bucketed=True) for r in rows]

    async def observations(
        self,
        series: str,
        snap: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Observation]:
        """Observations of the snap in order of receipt, after the `(received_at, id)` given."""
        after_at, after_id = after if after is not None else (None, "")
        rows = await self._reader.fetch(_OBSERVATIONS, series, snap, after_at, after_id, limit)
        return [observation_from_row(r) for r in rows]

    async def quality(self, series: str, start: datetime, end: datetime) -> QualitySummary:
        row = await self._reader.fetchrow(_QUALITY, series, start, end)
        assert row is not None  # an aggregate always returns one row
        count = int(row["count"])
        return QualitySummary(
            reference_data_id=series,
            from_=start,
            to=end,
            count=count,
            average_score=_rounded(row["average_score"]),
            minimum_score=_rounded(row["minimum_score"]),
            suspect_count=int(row["suspect_count"]),
            average_dimensions=None
            if count == 0
            else QualityAverages(
                completeness=round(row["completeness"], SCORE_DECIMALS),
                timeliness=round(row["timeliness"], SCORE_DECIMALS),
                consistency=round(row["consistency"], SCORE_DECIMALS),
                validity=round(row["validity"], SCORE_DECIMALS),
            ),
        )


def _rounded(value: float | None) -> float | None:
    # Averages carry float noise (0.95 + 1e-16); scores are published with 4 decimals.
    return None if value is None else round(value, SCORE_DECIMALS)
