"""The `snaps` table: where each (series, snap) stands, and which windows are due to close.

Rows are written only by a holder of the series' lock, so they need no row locks of their
own; the scheduler lists due snaps without locking and re-decides each under the series
lock (taking a row lock first would invert the lock order against the worker).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.ports import SnapState

if TYPE_CHECKING:
    from app.adapters.postgres import Connection
    from app.ports import SnapKey


async def save_snap_states(conn: Connection, states: Sequence[SnapState]) -> None:
    """Upsert the states in one round trip."""
    if not states:
        return
    await conn.execute(
        """INSERT INTO snaps (reference_data_id, snap, window_closes_at, state, latest_version,
                              updated_at)
           SELECT r.series, r.snap, r.closes, r.state, r.version, clock_timestamp()
             FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[],
                         $5::int[]) AS r(series, snap, closes, state, version)
           ON CONFLICT (reference_data_id, snap) DO UPDATE
               SET window_closes_at = EXCLUDED.window_closes_at,
                   state = EXCLUDED.state,
                   latest_version = EXCLUDED.latest_version,
                   updated_at = EXCLUDED.updated_at""",
        [s.reference_data_id for s in states],
        [s.snap for s in states],
        [s.window_closes_at for s in states],
        [s.state for s in states],
        [s.latest_version for s in states],
    )


async def snap_states(conn: Connection, keys: Sequence[SnapKey]) -> dict[SnapKey, SnapState]:
    """The recorded state of each key seen before."""
    if not keys:
        return {}
    rows = await conn.fetch(
        """SELECT s.reference_data_id, s.snap, s.window_closes_at, s.state, s.latest_version
             FROM snaps s
             JOIN unnest($1::text[], $2::timestamptz[]) AS k(series, snap)
               ON s.reference_data_id = k.series AND s.snap = k.snap""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {
        (row["reference_data_id"], row["snap"]): SnapState(
            reference_data_id=row["reference_data_id"],
            snap=row["snap"],
            window_closes_at=row["window_closes_at"],
            state=row["state"],
            latest_version=row["latest_version"],
        )
        for row in rows
    }


async def due_snaps(conn: Connection, limit: int) -> list[SnapKey]:
    """Open snaps whose window has ended by the database clock, oldest deadline first."""
    rows = await conn.fetch(
        """SELECT reference_data_id, snap FROM snaps
            WHERE state = 'open' AND window_closes_at <= clock_timestamp()
            ORDER BY window_closes_at LIMIT $1""",
        limit,
    )
    return [(row["reference_data_id"], row["snap"]) for row in rows]
