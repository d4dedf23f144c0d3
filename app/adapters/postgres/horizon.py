"""The `lake_horizon` table, read side: where retention stands per dataset (`LakeHorizon`).

Read on every query that may reach before it (one primary-key lookup), never cached: a
stale horizon would send a read of dropped rows to the database.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg


class PostgresLakeHorizon:
    """`LakeHorizon` over `lake_horizon` (the reader pool)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def retained_from(self, dataset: str) -> datetime | None:
        value: datetime | None = await self._pool.fetchval(
            "SELECT retained_from FROM lake_horizon WHERE dataset = $1", dataset
        )
        return value
