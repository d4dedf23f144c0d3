"""`qis scheduler`: one leader closes snap windows and relays the outbox; others stand by.

Leadership is a session-level PostgreSQL advisory lock (`pg_try_advisory_lock`) held on a
dedicated connection: it is released by the server the moment that connection ends, so a
crashed or partitioned leader loses it without any lease to expire. Replicas retry every
interval. The leader probes its connection every interval (and hears at once when the
driver sees it close) and then stops its loops; work still in flight when it is lost is
safe to overlap with the next leader's (window closing takes the series locks and
re-decides from the stored state; relayed events keep their ids and are marked
published once).

The leader runs two independent loops, so a relay backlog never delays window closing:
closing due windows every interval, and relaying the outbox.

The relays (outbox events, and the audit trail to `qis.audit.v1`) run here rather than in
the workers: a single relay publishes in commit order without any coordination between
processes, and it runs only on the leader. The leader LISTENs on the channel the outbox
and audit triggers notify at each commit, so events go out within milliseconds, with
the interval as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from app.adapters.failures import is_transient
from app.adapters.postgres import outbox
from app.ports import EventPublisher, PipelineDatabase
from app.services.journal import Topics
from app.services.publish import relay_audit, relay_outbox
from app.services.reconcile import close_due_windows
from app.settings import SchedulerSettings
from app.telemetry.metrics import QisMetrics, noop_metrics

_log = logging.getLogger("qis.scheduler")

LEADER_LOCK_KEY = 0x5149535F4C4452  # "QIS_LDR"
_RECOVERABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Scheduler:
    """Leader election, then the leader's loops: close windows, relay the outbox, purge it."""

    def __init__(
        self,
        settings: SchedulerSettings,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        db: PipelineDatabase,
        pool: asyncpg.Pool,
        publisher: EventPublisher,
        topics: Topics,
        metrics: QisMetrics | None = None,
        leader_key: int = LEADER_LOCK_KEY,
    ) -> None:
        self._settings = settings
        self._leader_key = leader_key
        self._connect = connect
        self._db = db
        self._pool = pool
        self._publisher = publisher
        self._topics = topics
        self._metrics = metrics or noop_metrics("scheduler")
        self.is_leader = False
        self.cycles = 0
        self._purged_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign for leadership until `stop`; lead while holding the lock."""
        while not stop.is_set():
            try:
                await self._campaign(stop)
            except _RECOVERABLE as exc:
                _log.error("scheduler connection failed", extra={"error": repr(exc)})
            self.is_leader = False
            await _wait(stop, self._settings.interval_seconds)

    async def _campaign(self, stop: asyncio.Event) -> None:
        conn = await self._connect()
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._leader_key):
                return  # another replica leads
            _log.info("leadership acquired")
            self.is_leader = True
            await self._lead(conn, stop)
        finally:
            with contextlib.suppress(*_RECOVERABLE):
                await asyncio.wait_for(conn.close(), 5)
            if self.is_leader:
                _log.info("leadership released")

    async def _lead(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        # `halt` ends every leader loop: on `stop`, or as soon as leadership may be lost.
        halt = asyncio.Event()
        wake = asyncio.Event()
        conn.add_termination_listener(lambda _: halt.set())
        await conn.add_listener(outbox.NOTIFY_CHANNEL, lambda *_: wake.set())
        # Independent loops, so a long relay backlog never delays closing windows.
        async with asyncio.TaskGroup() as group:
            group.create_task(self._holding(conn, stop, halt))
            group.create_task(self._closing_windows(halt))
            group.create_task(self._relaying(halt, wake))

    async def _holding(
        self, conn: asyncpg.Connection, stop: asyncio.Event, halt: asyncio.Event
    ) -> None:
        """Check the lock's connection every interval; step down when it is gone."""
        while not halt.is_set():
            await _wait(stop, self._settings.interval_seconds, halt)
            if stop.is_set():
                break
            try:
                await conn.fetchval("SELECT 1", timeout=self._settings.interval_seconds * 5)
            except _RECOVERABLE as exc:
                _log.error("leader connection lost; stepping down", extra={"error": repr(exc)})
                break
        halt.set()

    async def _closing_windows(self, halt: asyncio.Event) -> None:
        while not halt.is_set():
            await self.close_windows()
            self.cycles += 1
            if time.monotonic() - self._purged_at >= self._settings.purge_interval_seconds:
                self._purged_at = time.monotonic()
                await self.purge()
            await _wait(halt, self._settings.interval_seconds)

    async def _relaying(self, halt: asyncio.Event, wake: asyncio.Event) -> None:
        while not halt.is_set():
            wake.clear()
            await self.relay(halt)
            await _wait(halt, self._settings.interval_seconds, wake)

    async def close_windows(self) -> None:
        """Close every due window (one round); failures are logged and retried next round."""
        try:
            await close_due_windows(
                self._db,
                topics=self._topics,
                metrics=self._metrics,
                limit=self._settings.window_batch_size,
                transient=is_transient,
            )
        except Exception as exc:  # transient, or a bug: the next round tries again
            _log.error("closing windows failed", extra={"error": repr(exc)})

    async def relay(self, halt: asyncio.Event | None = None) -> None:
        """Publish the outbox, then the audit trail, until both are drained (or `halt`).

        Official values and alerts go first: an audit backlog is only worked on while the
        outbox has less than a batch waiting, so it never delays them by more than a batch.
        """
        limit = self._settings.relay_batch_size
        try:
            while not (halt and halt.is_set()):
                events = await relay_outbox(
                    self._db,
                    self._publisher,
                    topics=self._topics,
                    metrics=self._metrics,
                    limit=limit,
                )
                if events >= limit:
                    continue  # a full batch: more events may be waiting
                records = await relay_audit(
                    self._db,
                    self._publisher,
                    topics=self._topics,
                    limit=limit,
                    metrics=self._metrics,
                )
                if records < limit:
                    break  # both drained
        except Exception as exc:  # EventBusUnavailable, the database, or a bug: retried
            _log.error("relay failed", extra={"error": repr(exc)})

    async def purge(self) -> None:
        """Delete outbox rows published longer ago than the retention."""
        try:
            async with self._pool.acquire() as conn:
                while await outbox.purge_published(conn, self._settings.outbox_retention_seconds):
                    pass
        except Exception as exc:
            _log.error("outbox purge failed", extra={"error": repr(exc)})


async def _wait(until: asyncio.Event, seconds: float, *also: asyncio.Event) -> None:
    """Sleep up to `seconds`, returning early when any of the events is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in (until, *also)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
