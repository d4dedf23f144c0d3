"""Sink relays: the published events, copied to downstream services (EventBridge, Timestream).

Each enabled sink has a relay of its own that follows the outbox by id from a saved
position (`sink.<name>` in the relay positions), hands the official-value and
quality-alert events to `sink.deliver` in outbox (= commit) order, and saves the position
past them only once `deliver` returned. So:

- a sink sees every event once it is committed, in commit order, so in order per series;
- a sink that is down (`SinkUnavailable`, or anything else raised) keeps its position
  and gets the same events again next round: at least once, with stable event ids;
- a sink never slows Kafka publication or another sink: each has its own position, and
  the outbox keeps rows until every enabled sink has passed them (the purge's guard);
- an event a sink refuses for what it is is reported by the adapter and counted here
  (`SinkEventsRefused`); it never blocks the sink.

A sink enabled for the first time starts after the newest event in the outbox: it
receives the events committed from then on, not a burst of old ones (history is in the
data lake). Disabled and enabled again, it resumes from its saved position.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import msgspec

from app.domain.events import decode_event
from app.ports import EventSink, PendingMessage, PipelineDatabase, SinkEvent, SinkUnavailable

_log = logging.getLogger("qis.sinks")

POSITION_PREFIX = "sink."


def position_name(sink: EventSink) -> str:
    """The relay position a sink's relay saves (also what the outbox purge keeps for)."""
    return POSITION_PREFIX + sink.name


class SinkMetrics(Protocol):
    """What sink relays record (`QisMetrics` in app/telemetry/metrics.py)."""

    def sink_delivered(self, sink: str, events: int, refused: int, seconds: float) -> None:
        """One batch taken by `sink` (`refused` of its `events` were left out)."""
        ...

    def sink_failed(self, sink: str) -> None:
        """One batch `sink` did not take; it is sent again next round."""
        ...


class _NoMetrics:
    def sink_delivered(self, sink: str, events: int, refused: int, seconds: float) -> None:
        return None

    def sink_failed(self, sink: str) -> None:
        return None


SinkSpan = Callable[[str, Sequence[SinkEvent]], AbstractContextManager[None]]


def _no_span(_: str, __: Sequence[SinkEvent]) -> AbstractContextManager[None]:
    return nullcontext()


def sink_events(messages: Sequence[PendingMessage]) -> list[SinkEvent]:
    """The outbox rows a sink receives, decoded (the relay reads only the official-value
    and quality-alert topics, so all three domain events). A row this release cannot
    decode (a newer release's event, or a row written by hand) is logged and left out:
    it must never stop a sink."""
    events: list[SinkEvent] = []
    for message in messages:
        try:
            event = decode_event(message.payload)
        except msgspec.DecodeError as exc:
            _log.warning(
                "event not decodable, not sent to sinks",
                extra={"event_id": message.event_id, "error": str(exc)},
            )
            continue
        events.append(
            SinkEvent(
                position=message.id,
                event_id=message.event_id,
                topic=message.topic,
                key=message.key,
                payload=message.payload,
                event=event,
                headers=message.headers,
            )
        )
    return events


class SinkRelay:
    """One sink's relay over the outbox (run by the scheduler's leader)."""

    def __init__(
        self,
        sink: EventSink,
        db: PipelineDatabase,
        topics: Sequence[str],
        *,
        metrics: SinkMetrics | None = None,
        span: SinkSpan = _no_span,
    ) -> None:
        self.sink = sink
        self._db = db
        self.topics = tuple(topics)
        self._metrics: SinkMetrics = metrics or _NoMetrics()
        self._span = span
        self.failures = 0

    async def relay_once(self) -> int:
        """Deliver up to one batch after the saved position; return how many outbox rows
        it moved past (0: nothing waiting). Raises what the sink raised (the position
        stays)."""
        name = position_name(self.sink)
        async with self._db.transaction() as store:
            position = await store.open_relay_position(name)
            messages = await store.outbox_after(position, self.topics, self.sink.batch_size)
        if not messages:
            return 0
        events = sink_events(messages)
        if events:
            started = time.perf_counter()
            with self._span(self.sink.name, events):
                refused = await self.sink.deliver(events)
            self._metrics.sink_delivered(
                self.sink.name, len(events), refused, time.perf_counter() - started
            )
        async with self._db.transaction() as store:
            await store.save_relay_position(name, messages[-1].id)
        return len(messages)

    async def drain(self, is_halted: Callable[[], bool] = lambda: False) -> int:
        """Deliver until nothing waits (or halted, or the sink fails); return the rows
        moved past. A failure is logged and counted, never raised: the next round
        retries from the saved position."""
        moved = 0
        try:
            while not is_halted():
                step = await self.relay_once()
                moved += step
                if step < self.sink.batch_size:
                    break
        except Exception as exc:  # SinkUnavailable, the database, or a bug: retried
            self.failures += 1
            self._metrics.sink_failed(self.sink.name)
            level = logging.WARNING if isinstance(exc, SinkUnavailable) else logging.ERROR
            _log.log(level, "sink relay failed", extra={"sink": self.sink.name, "error": repr(exc)})
        return moved
