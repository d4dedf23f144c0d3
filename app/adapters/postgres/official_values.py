"""The `official_values` table, write side: immutable versions and what reconciliation reads.

(The query side is `queries.py`.) `recorded_at` is the knowledge time. Versions are only
ever inserted (a trigger refuses updates), and `(reference_data_id, snap, version)` is
the primary key, so two writers racing for the same version number cannot both commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from app.domain.versions import OfficialValue, official_value_from_columns

if TYPE_CHECKING:
    import asyncpg

    from app.adapters.postgres import Connection
    from app.ports import SnapKey

_encode = msgspec.json.Encoder()

QUALITY_FIELDS = ("score", "completeness", "timeliness", "consistency", "validity")


def quality_column(field: str, alias: str = "") -> str:
    """SQL for one quality dimension of a version: its column, or, for a row written before
    the columns existed (migration 0007), the same field of the jsonb `quality`."""
    column = "quality_score" if field == "score" else field
    prefix = f"{alias}." if alias else ""
    return f"coalesce({prefix}{column}, ({prefix}quality->>'{field}')::float8)"


def version_columns(alias: str = "") -> str:
    """The columns `official_value_from_row` reads."""
    prefix = f"{alias}." if alias else ""
    quality = ", ".join(
        f"{quality_column(f, alias)} AS {'quality_score' if f == 'score' else f}"
        for f in QUALITY_FIELDS
    )
    return (
        f"{prefix}reference_data_id, {prefix}snap, {prefix}version, {prefix}value, "
        f"{prefix}status, {prefix}method, {prefix}sources_used, "
        f"{prefix}sources_excluded::text AS sources_excluded, {quality}, "
        f"{prefix}supersedes, {prefix}recorded_at"
    )


_COLUMNS = version_columns("o")


def official_value_from_row(row: asyncpg.Record) -> OfficialValue:
    """Rebuild the domain struct from a row selected with this module's columns."""
    return official_value_from_columns(row)


async def insert_versions(conn: Connection, versions: Sequence[OfficialValue]) -> None:
    """Insert versions in one round trip."""
    if not versions:
        return
    await conn.execute(
        """INSERT INTO official_values
               (reference_data_id, snap, version, value, status, method, sources_used,
                sources_excluded, quality_score, completeness, timeliness, consistency,
                validity, supersedes, recorded_at)
           SELECT r.series, r.snap, r.version, r.value, r.status, r.method,
                  ARRAY(SELECT jsonb_array_elements_text(r.used::jsonb)),
                  r.excluded::jsonb, r.score, r.completeness, r.timeliness, r.consistency,
                  r.validity, r.supersedes, r.recorded_at
             FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::float8[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::float8[], $10::float8[],
                         $11::float8[], $12::float8[], $13::float8[], $14::int[],
                         $15::timestamptz[])
                  AS r(series, snap, version, value, status, method, used, excluded, score,
                       completeness, timeliness, consistency, validity, supersedes,
                       recorded_at)""",
        [v.reference_data_id for v in versions],
        [v.snap for v in versions],
        [v.version for v in versions],
        [v.value for v in versions],
        [v.status for v in versions],
        [v.method for v in versions],
        [_encode.encode(v.sources_used).decode() for v in versions],
        [_encode.encode(v.sources_excluded).decode() for v in versions],
        [v.quality.score for v in versions],
        [v.quality.completeness for v in versions],
        [v.quality.timeliness for v in versions],
        [v.quality.consistency for v in versions],
        [v.quality.validity for v in versions],
        [v.supersedes for v in versions],
        [v.recorded_at for v in versions],
    )


async def latest_versions(
    conn: Connection, keys: Sequence[SnapKey]
) -> dict[SnapKey, OfficialValue]:
    """The highest version of each (series, snap) that has one."""
    if not keys:
        return {}
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS}
              FROM unnest($1::text[], $2::timestamptz[]) AS k(series, snap)
              CROSS JOIN LATERAL (
                  SELECT * FROM official_values v
                   WHERE v.reference_data_id = k.series AND v.snap = k.snap
                   ORDER BY v.version DESC LIMIT 1) AS o""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    values = (official_value_from_row(row) for row in rows)
    return {(v.reference_data_id, v.snap): v for v in values}


async def previous_values(
    conn: Connection, keys: Sequence[SnapKey]
) -> dict[SnapKey, tuple[datetime, float]]:
    """For each key: (snap, latest value) of the series' closest earlier snap with a version."""
    if not keys:
        return {}
    rows = await conn.fetch(
        """SELECT k.series, k.snap AS for_snap, p.snap, p.value
             FROM unnest($1::text[], $2::timestamptz[]) AS k(series, snap)
             CROSS JOIN LATERAL (
                 SELECT v.snap, v.value FROM official_values v
                  WHERE v.reference_data_id = k.series AND v.snap < k.snap
                  ORDER BY v.snap DESC, v.version DESC LIMIT 1) AS p""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(row["series"], row["for_snap"]): (row["snap"], row["value"]) for row in rows}
