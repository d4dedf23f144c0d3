"""LISTEN for new official versions: PostgreSQL announces each one when its transaction commits.

The trigger `official_values_notify` (migration `official_values_notify`) calls
`pg_notify('qis_official_values', '<series>|<snap as UTC epoch microseconds>|<version>')`
for every inserted version. NOTIFY is transactional (sent on commit, never for a rolled
back version) and delivered to every listening session in commit order. It is only
delivered on the server it was raised on, so the listener connects to the *writer*.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from app.adapters.postgres.pool import connect
from app.settings import DbSettings

_log = logging.getLogger("qis.publications")

CHANNEL = "qis_official_values"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RECONNECT_MAX_SECONDS = 5.0


class Publication:
    """One announced version (series, snap, version)."""

    __slots__ = ("series", "snap", "version")

    def __init__(self, series: str, snap: datetime, version: int) -> None:
        self.series = series
        self.snap = snap
        self.version = version


def parse_payload(payload: str) -> Publication:
    """`'<series>|<epoch microseconds>|<version>'` as the trigger writes it."""
    series, micros, version = payload.rsplit("|", 2)
    return Publication(series, _EPOCH + timedelta(microseconds=int(micros)), int(version))


class PublicationListener:
    """Keeps one connection LISTENing; tells its callbacks about versions, gaps and recovery.

    `on_connected` runs once LISTEN is active (also after a reconnect), `on_disconnected`
    as soon as the connection is known lost: a publication may have been missed then.
    The connection is probed every `check_seconds`, so a silently dead one is noticed.
    """

    def __init__(
        self,
        dsn: str,
        on_published: Callable[[Publication], None],
        on_connected: Callable[[], None],
        on_disconnected: Callable[[], None],
        check_seconds: float = 1.0,
        channel: str = CHANNEL,
        db: DbSettings | None = None,
    ) -> None:
        self._dsn = dsn
        self._db = db or DbSettings()  # TLS and credentials of the connection
        self._on_published = on_published
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._check_seconds = check_seconds
        self._channel = channel
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connected = False
        self.received = 0
        self.server_pid: int | None = None  # the backend LISTENing, while connected

    async def start(self, within_seconds: float = 10.0) -> None:
        """Start listening in the background; return once LISTEN is active (or raise)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="publication-listener")
        try:
            await asyncio.wait_for(self._listening.wait(), within_seconds)
        except TimeoutError:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop listening; safe to call twice."""
        task, self._task = self._task, None
        # Cancel until done: a driver timeout racing the cancellation can swallow it.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection[asyncpg.Record] | None = None
            lost = asyncio.Event()
            try:
                conn = await connect(self._dsn, self._db, timeout=self._check_seconds * 5)
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                await conn.add_listener(self._channel, self._deliver)
                self.server_pid = conn.get_server_pid()
                self.connected = True
                self._on_connected()
                self._listening.set()
                backoff = 0.1
                _log.info("listening for publications", extra={"channel": self._channel})
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._check_seconds)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=self._check_seconds)
                raise ConnectionError("listener connection terminated")
            except asyncio.CancelledError:
                self._lose()
                raise
            except Exception as exc:  # whatever broke the connection: start over, never die
                if self.connected:
                    _log.warning("publication listener lost", extra={"error": repr(exc)})
                self._lose()
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _RECONNECT_MAX_SECONDS)

    def _lose(self) -> None:
        if self.connected:
            self.connected = False
            self._on_disconnected()

    def _deliver(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            publication = parse_payload(str(payload))
        except ValueError:
            _log.error("unreadable publication payload", extra={"payload": str(payload)[:200]})
            return
        self.received += 1
        self._on_published(publication)
