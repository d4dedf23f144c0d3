"""The `reference_data` table (series configurations) and the per-series lock.

Every writer of a series' state (the worker's reconciliation, the scheduler's window
closing, a configuration change) first takes that series' transaction-scoped advisory
lock, so one series is handled by one transaction at a time whoever writes. The lock
uses the two-key form `(namespace, hashtext(id))`, a key space of its own that never
meets the single-key locks (migrations, journal, leadership). Locks are taken in order
of their key, not of the id: two ids may share a hash, and only one global order of
the *keys* rules out deadlocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from app.domain.series import Series, SeriesConfig

if TYPE_CHECKING:
    import asyncpg

    from app.adapters.postgres import Connection

SERIES_LOCK_NAMESPACE = 0x51495353  # "QISS"

_encode = msgspec.json.Encoder()
_config = msgspec.json.Decoder(SeriesConfig)

_COLUMNS = "reference_data_id, config::text AS config, updated_at"


def encode_config(config: SeriesConfig) -> str:
    """The JSON stored in `reference_data.config`."""
    return _encode.encode(config).decode()


def _series(row: asyncpg.Record) -> Series:
    return Series(
        reference_data_id=row["reference_data_id"],
        config=_config.decode(row["config"]),
        updated_at=row["updated_at"],
    )


async def lock_series(conn: Connection, reference_data_ids: Sequence[str]) -> None:
    """Take each series' lock until the end of the transaction, in key order."""
    if not reference_data_ids:
        return
    await conn.execute(
        """SELECT count(pg_advisory_xact_lock($1, k.key))
             FROM (SELECT DISTINCT hashtext(s) AS key FROM unnest($2::text[]) AS s
                   ORDER BY 1) AS k""",
        SERIES_LOCK_NAMESPACE,
        list(reference_data_ids),
    )


async def get_series(conn: Connection, reference_data_id: str) -> Series | None:
    """One series, or None."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM reference_data WHERE reference_data_id = $1", reference_data_id
    )
    return None if row is None else _series(row)


async def get_many(conn: Connection, reference_data_ids: Sequence[str]) -> dict[str, Series]:
    """The series that exist among the ids."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM reference_data WHERE reference_data_id = ANY($1::text[])",
        list(reference_data_ids),
    )
    return {row["reference_data_id"]: _series(row) for row in rows}


async def list_series(conn: Connection, after: str | None, limit: int) -> list[Series]:
    """Series in id order after `after` (keyset pagination: stable under inserts)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM reference_data
             WHERE $1::text IS NULL OR reference_data_id > $1
             ORDER BY reference_data_id LIMIT $2""",
        after,
        limit,
    )
    return [_series(row) for row in rows]


async def create_missing(
    conn: Connection, reference_data_ids: Sequence[str], config: SeriesConfig
) -> list[Series]:
    """Create absent series with `config`; an existing series is left untouched."""
    rows = await conn.fetch(
        f"""INSERT INTO reference_data (reference_data_id, config, created_at, updated_at)
            SELECT s, $2::jsonb, clock_timestamp(), clock_timestamp()
              FROM unnest($1::text[]) AS s
            ON CONFLICT (reference_data_id) DO NOTHING
            RETURNING {_COLUMNS}""",
        list(reference_data_ids),
        encode_config(config),
    )
    return sorted((_series(row) for row in rows), key=lambda s: s.reference_data_id)


async def save_series(
    conn: Connection, reference_data_id: str, config: SeriesConfig, updated_at: datetime
) -> Series:
    """Create or replace a configuration."""
    row = await conn.fetchrow(
        f"""INSERT INTO reference_data (reference_data_id, config, created_at, updated_at)
            VALUES ($1, $2::jsonb, $3, $3)
            ON CONFLICT (reference_data_id) DO UPDATE
                SET config = EXCLUDED.config, updated_at = EXCLUDED.updated_at
            RETURNING {_COLUMNS}""",
        reference_data_id,
        encode_config(config),
        updated_at,
    )
    assert row is not None
    return _series(row)
