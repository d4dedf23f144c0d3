"""The append-only `observations` table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from app.domain.observation import Observation

if TYPE_CHECKING:
    import asyncpg

    from app.adapters.postgres import Connection

_json = msgspec.json.Encoder()
_decode_attributes = msgspec.json.Decoder(dict[str, object] | None)

# One JSON document per batch, expanded by the server (json_populate_recordset): msgspec
# encodes a row in about 1.5 us, against 5 us for asyncpg's per-element array encoding
# of the same columns (benchmarks/results/ingestion.md). ON CONFLICT makes re-delivery a
# no-op.
_INSERT = """
INSERT INTO observations
    (observation_id, reference_data_id, source, snap, value, observed_at, received_at, attributes)
SELECT observation_id, reference_data_id, source, snap, value, observed_at, received_at,
       attributes
  FROM json_populate_recordset(NULL::observations, $1::json)
ON CONFLICT (reference_data_id, snap, observation_id) DO NOTHING
RETURNING observation_id
"""


async def insert_observations(conn: Connection, observations: Sequence[Observation]) -> list[str]:
    """Insert new observations; return the ids that were not stored before."""
    if not observations:
        return []
    rows = await conn.fetch(_INSERT, _json.encode(observations).decode())
    return [r["observation_id"] for r in rows]


async def observations_for_snaps(
    conn: Connection, keys: Sequence[tuple[str, datetime]]
) -> list[Observation]:
    """Every stored observation of the given (series, snap) pairs."""
    if not keys:
        return []
    rows = await conn.fetch(
        """SELECT o.observation_id, o.reference_data_id, o.source, o.snap, o.value,
                  o.observed_at, o.received_at, o.attributes::text AS attributes
             FROM observations o
             JOIN unnest($1::text[], $2::timestamptz[]) AS k(series, snap)
               ON o.reference_data_id = k.series AND o.snap = k.snap""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return [observation_from_row(r) for r in rows]


def observation_from_row(r: asyncpg.Record) -> Observation:
    """An `observations` row (with `attributes::text AS attributes`) as the domain type."""
    return Observation(
        observation_id=r["observation_id"],
        reference_data_id=r["reference_data_id"],
        source=r["source"],
        snap=r["snap"],
        value=r["value"],
        observed_at=r["observed_at"],
        received_at=r["received_at"],
        attributes=None if r["attributes"] is None else _decode_attributes.decode(r["attributes"]),
    )
