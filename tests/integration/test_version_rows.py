"""Version rows: quality as columns, lineage in the audit trail, older rows still readable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from app.adapters.postgres.official_values import insert_versions
from app.adapters.postgres.queries import PostgresQueries
from app.domain.quality import Quality
from app.domain.reconciliation import Exclusion
from app.domain.versions import OfficialValue
from tests.conftest import unique_series

SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)
AT = datetime(2026, 1, 15, 14, 1, tzinfo=UTC)
QUALITY = Quality(score=0.9583, completeness=0.8, timeliness=1.0, consistency=0.9667, validity=1.0)


def _version(series: str, snap: datetime) -> OfficialValue:
    return OfficialValue(
        reference_data_id=series,
        snap=snap,
        version=1,
        value=101.25,
        status="official",
        method="median",
        sources_used=("a", "b", "c", "d"),
        sources_excluded=(Exclusion(source="e", reason="outlier"),),
        quality=QUALITY,
        supersedes=None,
        recorded_at=AT,
    )


async def _insert_old_format(pool: asyncpg.Pool, version: OfficialValue) -> None:
    """A row as releases before migration 0007 wrote it: quality jsonb, observation ids."""
    await pool.execute(
        """INSERT INTO official_values
               (reference_data_id, snap, version, value, status, method, sources_used,
                sources_excluded, quality, observation_ids, supersedes, recorded_at)
           VALUES ($1, $2, 1, $3, 'official', 'median', $4, $5::jsonb, $6::jsonb, $7, NULL, $8)""",
        version.reference_data_id,
        version.snap,
        version.value,
        list(version.sources_used),
        msgspec.json.encode(version.sources_excluded).decode(),
        msgspec.json.encode(version.quality).decode(),
        [f"h:{i:032x}" for i in range(5)],
        version.recorded_at,
    )


async def test_new_and_older_rows_read_back_the_same_version(pool: asyncpg.Pool) -> None:
    series = unique_series("VR")
    new, old = _version(series, SNAP), _version(series, SNAP + timedelta(minutes=5))
    async with pool.acquire() as conn:
        await insert_versions(conn, [new])
    await _insert_old_format(pool, old)
    queries = PostgresQueries(pool, pool)

    assert await queries.latest(series, new.snap) == new
    assert await queries.latest(series, old.snap) == old
    summary = await queries.quality(series, SNAP, SNAP + timedelta(hours=1))
    assert (summary.count, summary.average_score, summary.minimum_score) == (2, 0.9583, 0.9583)
    assert summary.average_dimensions is not None
    assert summary.average_dimensions.completeness == 0.8
    assert summary.average_dimensions.consistency == 0.9667


async def test_a_new_row_stores_quality_as_numbers_and_no_lineage(pool: asyncpg.Pool) -> None:
    series = unique_series("VR")
    new, old = _version(series, SNAP), _version(series, SNAP + timedelta(minutes=5))
    async with pool.acquire() as conn:
        await insert_versions(conn, [new])
    await _insert_old_format(pool, old)

    rows = await pool.fetch(
        """SELECT snap, quality, observation_ids, quality_score, validity,
                  pg_column_size(v.*) AS size
             FROM official_values v WHERE reference_data_id = $1 ORDER BY snap""",
        series,
    )
    fresh, before = rows
    assert (fresh["quality"], fresh["observation_ids"]) == (None, None)
    assert (fresh["quality_score"], fresh["validity"]) == (0.9583, 1.0)
    assert before["quality_score"] is None
    assert fresh["size"] < before["size"] - 200  # the reader's working set per version


async def test_a_row_without_any_quality_is_refused(pool: asyncpg.Pool) -> None:
    series = unique_series("VR")
    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await pool.execute(
            """INSERT INTO official_values
                   (reference_data_id, snap, version, value, status, method, sources_used,
                    sources_excluded, quality_score, recorded_at)
               VALUES ($1, $2, 1, 1.0, 'official', 'median', '{a}', '[]', 1.0, $3)""",
            series,
            SNAP,
            AT,
        )
    assert refused.value.constraint_name == "official_values_quality_present"
