"""Driving the reconciliation stage against the real PostgreSQL, as the worker does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from app.adapters.postgres.observations import insert_observations
from app.adapters.postgres.pipeline import PostgresPipelineStore
from app.domain.observation import Observation
from app.services.journal import Topics
from app.services.reconcile import reconciliation_stage

TOPICS = Topics()
STAGE = reconciliation_stage(PostgresPipelineStore, topics=TOPICS)


def obs(
    series: str,
    source: str,
    value: float,
    snap: datetime,
    *,
    observed_after: float = 0.0,
    received_at: datetime | None = None,
) -> Observation:
    observed_at = snap + timedelta(seconds=observed_after)
    return Observation(
        observation_id=f"{series}:{source}:{observed_at.isoformat()}:{value!r}",
        reference_data_id=series,
        source=source,
        snap=snap,
        value=value,
        observed_at=observed_at,
        received_at=received_at or observed_at + timedelta(milliseconds=500),
    )


async def deliver(pool: asyncpg.Pool, observations: Sequence[Observation]) -> None:
    """Store a batch and run the stage in one transaction (the worker's `process`)."""
    async with pool.acquire() as conn, conn.transaction():
        stored = set(await insert_observations(conn, observations))
        await STAGE(conn, [o for o in observations if o.observation_id in stored])


async def versions(pool: asyncpg.Pool, series: str, snap: datetime) -> list[asyncpg.Record]:
    rows = await pool.fetch(
        """SELECT version, value, status, supersedes, recorded_at
             FROM official_values WHERE reference_data_id = $1 AND snap = $2
            ORDER BY version""",
        series,
        snap,
    )
    return list(rows)
