"""Scheduler leadership: a session-level advisory lock on a dedicated connection.

The server releases the lock the moment that connection ends, so a crashed or
partitioned leader loses it without any lease to expire. The same connection LISTENs on
the channel the outbox and audit triggers notify at each commit, which wakes the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import asyncpg

from app.adapters.postgres.outbox import NOTIFY_CHANNEL, purge_published

LEADER_LOCK_KEY = 0x5149535F4C4452  # "QIS_LDR"


class AdvisoryLeadership:
    """`Leadership` held through one connection's advisory lock."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.lost = asyncio.Event()
        self.wake = asyncio.Event()

    async def confirm(self, timeout_seconds: float) -> None:
        await self._conn.fetchval("SELECT 1", timeout=timeout_seconds)


class AdvisoryLockElection:
    """`LeaderElection` by `pg_try_advisory_lock(key)` on a fresh connection."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        key: int = LEADER_LOCK_KEY,
    ) -> None:
        self._connect = connect
        self._key = key

    @contextlib.asynccontextmanager
    async def campaign(self) -> AsyncIterator[AdvisoryLeadership | None]:
        conn = await self._connect()
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key):
                yield None  # another replica leads
                return
            leadership = AdvisoryLeadership(conn)
            conn.add_termination_listener(lambda _: leadership.lost.set())
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: leadership.wake.set())
            yield leadership
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)


class PostgresOutboxRetention:
    """`OutboxRetention` on the writer pool; `sinks` names the enabled sink relays'
    positions (rows they have not passed are kept)."""

    def __init__(self, pool: asyncpg.Pool, sinks: Sequence[str] = ()) -> None:
        self._pool = pool
        self._sinks = tuple(sinks)

    async def purge_published(self, older_than_seconds: float) -> int:
        async with self._pool.acquire() as conn:
            return await purge_published(conn, older_than_seconds, sinks=self._sinks)


__all__ = [
    "LEADER_LOCK_KEY",
    "AdvisoryLeadership",
    "AdvisoryLockElection",
    "PostgresOutboxRetention",
]
