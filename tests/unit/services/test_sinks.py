"""Sink relays against in-memory ports: order, positions, redelivery, refusals, failures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from app.domain.events import encode_event, reconciliation_failed
from app.ports import OutboxMessage, SinkEvent, SinkUnavailable
from app.services.sinks import SinkRelay, position_name
from tests.unit.services.fakes import FakeDatabase

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)


class RecordingSink:
    """An `EventSink` keeping what it took; `fail_next` batches raise `SinkUnavailable`."""

    def __init__(self, batch_size: int = 3, refuse: frozenset[str] = frozenset()) -> None:
        self.name = "recording"
        self.batch_size = batch_size
        self.batches: list[list[str]] = []
        self.fail_next = 0
        self._refuse = refuse

    async def deliver(self, events: Sequence[SinkEvent]) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise SinkUnavailable("not now")
        self.batches.append([e.event_id for e in events])
        return sum(1 for e in events if e.event_id in self._refuse)


class RecordingMetrics:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, int, int]] = []
        self.failed: list[str] = []

    def sink_delivered(self, sink: str, events: int, refused: int, seconds: float) -> None:
        assert seconds >= 0
        self.delivered.append((sink, events, refused))

    def sink_failed(self, sink: str) -> None:
        self.failed.append(sink)


async def queue(db: FakeDatabase, topics: Sequence[str]) -> list[str]:
    """One new event per topic given (an alert-like event, decodable), in this order."""
    messages = []
    for n, topic in enumerate(topics, start=len(db.state.outbox)):
        event = reconciliation_failed(
            f"S{n % 2}", SNAP + timedelta(minutes=n), stage="window", error="x", failed_at=SNAP
        )
        messages.append(
            OutboxMessage(
                event_id=event.event_id,
                topic=topic,
                key=event.reference_data_id,
                payload=encode_event(event),
                headers={"traceparent": f"00-{n + 1:032x}-{n + 1:016x}-01"},
            )
        )
    async with db.transaction() as store:
        await store.open_journal()
        await store.enqueue(messages)
    return [m.event_id for m in messages]


async def test_a_sink_gets_its_topics_in_outbox_order_in_batches_and_keeps_its_position() -> None:
    db = FakeDatabase()
    sink, metrics = RecordingSink(batch_size=3), RecordingMetrics()
    relay = SinkRelay(sink, db, ("ov", "alerts"), metrics=metrics)
    assert await relay.drain() == 0  # started on an empty outbox: position 0
    ids = await queue(db, ["ov", "audit", "alerts", "ov", "ov", "audit", "ov"])

    assert await relay.drain() == 5
    assert sink.batches == [[ids[0], ids[2], ids[3]], [ids[4], ids[6]]]
    assert db.state.positions[position_name(sink)] == 7
    assert metrics.delivered == [("recording", 3, 0), ("recording", 2, 0)]

    # Nothing new: nothing sent again.
    assert await relay.drain() == 0
    assert len(sink.batches) == 2


async def test_a_failed_batch_keeps_the_position_and_is_sent_again_whole() -> None:
    db = FakeDatabase()
    sink, metrics = RecordingSink(batch_size=2), RecordingMetrics()
    relay = SinkRelay(sink, db, ("ov",), metrics=metrics)
    await relay.drain()
    ids = await queue(db, ["ov"] * 5)
    sink.fail_next = 1

    assert await relay.drain() == 0
    assert relay.failures == 1
    assert metrics.failed == ["recording"]
    assert db.state.positions[position_name(sink)] == 0

    assert await relay.drain() == 5
    assert [e for batch in sink.batches for e in batch] == ids


async def test_refused_events_are_counted_and_do_not_block_the_sink() -> None:
    db = FakeDatabase()
    metrics = RecordingMetrics()
    ids = await queue(db, ["ov"] * 3)
    sink = RecordingSink(batch_size=10, refuse=frozenset({ids[1]}))
    db.state.positions[position_name(sink)] = 0  # started before these events
    relay = SinkRelay(sink, db, ("ov",), metrics=metrics)

    assert await relay.drain() == 3
    assert metrics.delivered == [("recording", 3, 1)]
    assert db.state.positions[position_name(sink)] == 3


async def test_an_undecodable_row_is_left_out_but_passed() -> None:
    db = FakeDatabase()
    sink = RecordingSink()
    relay = SinkRelay(sink, db, ("ov",))
    await relay.drain()
    async with db.transaction() as store:
        await store.open_journal()
        await store.enqueue(
            [OutboxMessage(event_id="junk", topic="ov", key="k", payload=b'{"type": "newer"}')]
        )
    ids = await queue(db, ["ov"])

    assert await relay.drain() == 2
    assert sink.batches == [ids]
    assert db.state.positions[position_name(sink)] == 2


async def test_a_halted_relay_stops_between_batches() -> None:
    db = FakeDatabase()
    sink = RecordingSink(batch_size=2)
    relay = SinkRelay(sink, db, ("ov",))
    await relay.drain()
    await queue(db, ["ov"] * 4)
    calls = iter([False, True])

    assert await relay.drain(lambda: next(calls)) == 2
    assert len(sink.batches) == 1


async def test_a_new_sink_starts_after_the_newest_event_then_keeps_its_position() -> None:
    db = FakeDatabase()
    await queue(db, ["ov"] * 3)  # before the sink was enabled: not sent
    sink = RecordingSink()
    relay = SinkRelay(sink, db, ("ov",))

    assert await relay.drain() == 0
    assert db.state.positions[position_name(sink)] == 3
    later = await queue(db, ["ov"] * 2)
    assert await relay.drain() == 2
    assert sink.batches == [later]
