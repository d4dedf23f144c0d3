"""The scheduler: one leader closes snap windows and relays the outbox; others stand by.

Leadership comes from a `LeaderElection` (a PostgreSQL advisory lock in production:
released by the server the moment its connection ends, so a crashed or partitioned
leader loses it without any lease to expire). Replicas campaign every interval. The
leader confirms its leadership every interval and stops its loops as soon as it may be
lost; work still in flight then is safe to overlap with the next leader's (window
closing takes the series locks and re-decides from the stored state; relayed events keep
their ids and are marked published once).

The leader runs independent loops, so a relay backlog never delays window closing:
closing due windows (and purging old published outbox rows) every interval, relaying
the outbox and the audit trail, woken at each commit (`Leadership.wake`) with the
interval as a fallback, and one loop per enabled sink (app/services/sinks.py).

The relays run here rather than in the workers: a single relay publishes in commit order
without any coordination between processes.

Nothing a row holds stops a loop: what one snap or event cannot do is set aside by the
services it calls (`close_due_windows`, `relay_outbox`); anything else a round raises is
logged and the next round tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from app.ports import (
    EventPublisher,
    LeaderElection,
    Leadership,
    Metrics,
    OutboxRetention,
    PipelineDatabase,
    Tracing,
)
from app.services.archive import Archiver
from app.services.instrumentation import NullMetrics
from app.services.journal import Topics
from app.services.publish import relay_audit, relay_outbox
from app.services.reconcile import close_due_windows
from app.services.sinks import SinkRelay
from app.services.waiting import wait_any

_log = logging.getLogger("qis.scheduler")


@dataclass(frozen=True)
class SchedulePolicy:
    """How often and how much the leader works (from `SchedulerSettings`)."""

    interval_seconds: float = 1.0
    relay_batch_size: int = 500
    window_batch_size: int = 1000
    outbox_retention_seconds: float = 86_400.0
    purge_interval_seconds: float = 300.0
    # The lake archive's rounds (when the scheduler has an archiver).
    archive_interval_seconds: float = 60.0
    # Day partitions ahead and retention in PostgreSQL (`maintenance`), this often.
    maintenance_interval_seconds: float = 3600.0
    # Each sink relay (EventBridge, Timestream) looks for new events this often.
    sink_interval_seconds: float = 1.0


class Scheduler:
    """Leader election, then the leader's loops: close windows, relay the outbox, purge it."""

    def __init__(
        self,
        policy: SchedulePolicy,
        election: LeaderElection,
        db: PipelineDatabase,
        retention: OutboxRetention,
        publisher: EventPublisher,
        topics: Topics,
        *,
        transient: Callable[[BaseException], bool],
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        archiver: Archiver | None = None,
        maintenance: Callable[[], Awaitable[None]] | None = None,
        sinks: Sequence[SinkRelay] = (),
    ) -> None:
        self._policy = policy
        self.sinks = tuple(sinks)
        self._archiver = archiver
        self.archive_failures = 0
        self._maintenance = maintenance
        self._tracing = tracing
        self._election = election
        self._db = db
        self._retention = retention
        self._publisher = publisher
        self._topics = topics
        self._transient = transient
        self._metrics: Metrics = metrics or NullMetrics()
        self.is_leader = False
        self.cycles = 0
        self._purged_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign for leadership until `stop`; lead while holding it."""
        while not stop.is_set():
            try:
                async with self._election.campaign() as leadership:
                    if leadership is not None:
                        _log.info("leadership acquired")
                        self.is_leader = True
                        try:
                            await self._lead(leadership, stop)
                        finally:
                            _log.info("leadership released")
            except Exception as exc:  # the connection, or anything else: campaign again
                _log.error("scheduler connection failed", extra={"error": repr(exc)})
            self.is_leader = False
            await wait_any(stop, self._policy.interval_seconds)

    async def _lead(self, leadership: Leadership, stop: asyncio.Event) -> None:
        # `halt` ends every leader loop: on `stop`, or as soon as leadership may be lost.
        halt = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._holding(leadership, stop, halt))
            group.create_task(self._closing_windows(halt))
            group.create_task(self._relaying(halt, leadership.wake))
            if self._archiver is not None:
                group.create_task(self._archiving(self._archiver, halt))
            if self._maintenance is not None:
                group.create_task(self._maintaining(halt, self._maintenance))
            for sink in self.sinks:
                group.create_task(self._sinking(sink, halt))

    async def _holding(
        self, leadership: Leadership, stop: asyncio.Event, halt: asyncio.Event
    ) -> None:
        """Confirm leadership every interval; step down when it is gone."""
        while not halt.is_set():
            await wait_any(stop, self._policy.interval_seconds, halt, leadership.lost)
            if stop.is_set() or leadership.lost.is_set():
                break
            try:
                await leadership.confirm(self._policy.interval_seconds * 5)
            except Exception as exc:
                _log.error("leadership lost; stepping down", extra={"error": repr(exc)})
                break
        halt.set()

    async def _closing_windows(self, halt: asyncio.Event) -> None:
        while not halt.is_set():
            await self.close_windows()
            self.cycles += 1
            if time.monotonic() - self._purged_at >= self._policy.purge_interval_seconds:
                self._purged_at = time.monotonic()
                await self.purge()
            await wait_any(halt, self._policy.interval_seconds)

    async def _maintaining(
        self, halt: asyncio.Event, maintenance: Callable[[], Awaitable[None]]
    ) -> None:
        """Partitions ahead and retention (app/services/retention.py), at once on taking
        the lead, then every maintenance interval; a failed round is retried next time."""
        while not halt.is_set():
            try:
                await maintenance()
            except Exception as exc:
                _log.error("partition maintenance failed", extra={"error": repr(exc)})
            await wait_any(halt, self._policy.maintenance_interval_seconds)

    async def _sinking(self, sink: SinkRelay, halt: asyncio.Event) -> None:
        """One sink's relay: drain, then look again every sink interval. A sink that is
        down is retried from its saved position; it never stops another loop."""
        while not halt.is_set():
            await sink.drain(halt.is_set)
            await wait_any(halt, self._policy.sink_interval_seconds)

    async def _relaying(self, halt: asyncio.Event, wake: asyncio.Event) -> None:
        while not halt.is_set():
            wake.clear()
            await self.relay(halt)
            await wait_any(halt, self._policy.interval_seconds, wake)

    async def _archiving(self, archiver: Archiver, halt: asyncio.Event) -> None:
        while not halt.is_set():
            await self.archive(archiver, halt)
            await wait_any(halt, self._policy.archive_interval_seconds)

    async def archive(self, archiver: Archiver, halt: asyncio.Event | None = None) -> None:
        """One archive round; an unreachable S3 (or anything else) is logged, counted and
        retried next round: it never stops the scheduler's other loops."""
        try:
            await archiver.run_round(halt)
        except Exception as exc:
            self.archive_failures += 1
            archiver.metrics.lake_archive_failure()
            _log.error("lake archive failed", extra={"error": repr(exc)})

    async def close_windows(self) -> None:
        """Close every due window (one round); failures are logged and retried next round."""
        try:
            await close_due_windows(
                self._db,
                topics=self._topics,
                metrics=self._metrics,
                limit=self._policy.window_batch_size,
                transient=self._transient,
                tracing=self._tracing,
            )
        except Exception as exc:  # transient, or a bug: the next round tries again
            _log.error("closing windows failed", extra={"error": repr(exc)})

    async def relay(self, halt: asyncio.Event | None = None) -> None:
        """Publish the outbox, then the audit trail, until both are drained (or `halt`).

        Official values and alerts go first: an audit backlog is only worked on while the
        outbox has less than a batch waiting, so it never delays them by more than a batch.
        """
        limit = self._policy.relay_batch_size
        try:
            while not (halt and halt.is_set()):
                events = await relay_outbox(
                    self._db,
                    self._publisher,
                    topics=self._topics,
                    metrics=self._metrics,
                    tracing=self._tracing,
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
        except Exception as exc:  # the event bus, the database, or a bug: retried
            _log.error("relay failed", extra={"error": repr(exc)})

    async def purge(self) -> None:
        """Delete outbox rows published longer ago than the retention."""
        try:
            while await self._retention.purge_published(self._policy.outbox_retention_seconds):
                pass
        except Exception as exc:
            _log.error("outbox purge failed", extra={"error": repr(exc)})
