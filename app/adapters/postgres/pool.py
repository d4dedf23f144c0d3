"""asyncpg pools for the writer and reader endpoints, and health."""

from __future__ import annotations

import asyncpg

from app.settings import DbSettings


async def open_pool(dsn: str, settings: DbSettings) -> asyncpg.Pool:
    """An asyncpg pool with a bounded size and statement timeout."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        command_timeout=settings.command_timeout_seconds,
    )
    assert pool is not None
    return pool


class PostgresHealth:
    """Readiness: a pooled connection answers `SELECT 1`."""

    name = "postgres"

    def __init__(self, pool: asyncpg.Pool, timeout_seconds: float = 1.0) -> None:
        self._pool = pool
        self._timeout = timeout_seconds

    async def ping(self) -> None:
        async with self._pool.acquire(timeout=self._timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=self._timeout)
