"""Series configuration, the outbox relay and audit verification against in-memory ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from app.domain.audit import AuditRecord
from app.domain.errors import InvalidSeriesConfig
from app.domain.observation import Observation
from app.domain.series import SeriesConfig
from app.ports import EventBusUnavailable, OutboxMessage
from app.services.audit import verify_audit_trail
from app.services.journal import Topics
from app.services.publish import relay_audit, relay_outbox
from app.services.reconcile import reconciliation_stage
from app.services.series import configure_series
from tests.unit.services.fakes import (
    FakeDatabase,
    FakePublisher,
    RecordingMetrics,
    RecordingTracing,
    payload,
)

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
TOPICS = Topics(official_values="ov", quality_alerts="alerts", audit="audit")


def obs(source: str, value: float) -> Observation:
    return Observation(
        observation_id=f"{source}:{value!r}",
        reference_data_id="ETH-USD",
        source=source,
        snap=SNAP,
        value=value,
        observed_at=SNAP,
        received_at=SNAP + timedelta(seconds=1),
    )


async def publish_a_suspect_version(db: FakeDatabase) -> None:
    await configure_series(
        db,
        "ETH-USD",
        SeriesConfig(expected_sources=("a", "b", "c")),
        actor="api",
    )
    stage = reconciliation_stage(lambda store: store, topics=TOPICS)
    async with db.transaction() as store:
        await stage(
            store, db.store_observations([obs("a", 100.0), obs("b", 100.01), obs("c", 103)])
        )


async def test_configuration_change_is_audited_with_before_and_after() -> None:
    db = FakeDatabase()
    first = SeriesConfig(expected_sources=("a", "b"))
    second = SeriesConfig(expected_sources=("a", "b", "c"), window_seconds=5)

    created = await configure_series(db, "EURUSD", first, actor="api")
    db.advance(1)
    changed = await configure_series(db, "EURUSD", second, actor="api")

    assert created.config == first
    assert changed.config == second
    assert changed.updated_at == created.updated_at + timedelta(seconds=1)
    assert db.actions() == ["series.created", "series.configured"]
    record = db.state.audit[-1]
    assert record.before is not None
    assert record.after is not None
    assert record.before["config"]["expected_sources"] == ["a", "b"]
    assert record.after["config"]["window_seconds"] == 5


async def test_resending_the_stored_configuration_changes_nothing() -> None:
    db = FakeDatabase()
    config = SeriesConfig(min_sources=2)
    stored = await configure_series(db, "EURUSD", config, actor="api")
    db.advance(5)

    again = await configure_series(db, "EURUSD", config, actor="api")

    assert again == stored
    assert db.actions() == ["series.created"]


async def test_invalid_configuration_is_refused_before_any_write() -> None:
    db = FakeDatabase()
    with pytest.raises(InvalidSeriesConfig) as raised:
        await configure_series(
            db,
            "EURUSD",
            SeriesConfig(expected_sources=("a",), min_sources=2),
            actor="api",
        )
    assert [e.loc for e in raised.value.errors] == [("min_sources",)]
    assert db.state.series == {}
    assert db.state.audit == []


async def test_relay_publishes_in_outbox_order_and_audits_publications_once() -> None:
    db = FakeDatabase()
    await publish_a_suspect_version(db)
    publisher = FakePublisher()
    queued = [m.event_id for m in db.state.outbox]

    sent = await relay_outbox(db, publisher, topics=TOPICS)

    assert sent == len(queued) == 2
    assert [m.event_id for m in publisher.sent] == queued
    assert [m.topic for m in publisher.sent] == ["ov", "alerts"]
    published = [r for r in db.state.audit if r.action == "event.published"]
    assert [(r.after or {})["topic"] for r in published] == ["ov", "alerts"]
    assert [(r.after or {})["offset"] for r in published] == [0, 1]
    assert {r.entity_id for r in published} == {"ETH-USD/2026-01-15T14:00:00Z/v1"}
    assert await relay_outbox(db, publisher, topics=TOPICS) == 0
    assert len([r for r in db.state.audit if r.action == "event.published"]) == 2


async def test_audit_relay_follows_the_trail_in_seq_order_from_its_position() -> None:
    db = FakeDatabase()
    await publish_a_suspect_version(db)
    publisher = FakePublisher()

    first = await relay_audit(db, publisher, topics=TOPICS, limit=2)
    rest = await relay_audit(db, publisher, topics=TOPICS)

    assert first == 2
    assert first + rest == len(db.state.audit)
    assert await relay_audit(db, publisher, topics=TOPICS) == 0
    events = [payload(m) for m in publisher.sent]
    assert [e["seq"] for e in events] == [r.seq for r in db.state.audit]
    assert [e["hash"] for e in events] == [r.hash for r in db.state.audit]
    assert {e["type"] for e in events} == {"audit_record_appended"}
    assert {m.topic for m in publisher.sent} == {"audit"}
    assert {m.key for m in publisher.sent} == {"ETH-USD"}
    assert db.state.positions["audit"] == db.state.audit[-1].seq


async def test_audit_relay_republishes_with_the_same_ids_after_a_failure() -> None:
    db = FakeDatabase()
    await publish_a_suspect_version(db)
    publisher = FakePublisher()
    publisher.fail = True
    with pytest.raises(EventBusUnavailable):
        await relay_audit(db, publisher, topics=TOPICS)
    assert db.state.positions.get("audit", 0) == 0

    await relay_audit(db, publisher, topics=TOPICS)
    again = FakePublisher()
    db.state.positions["audit"] = 0  # as if the position was lost after publishing
    await relay_audit(db, again, topics=TOPICS)

    assert [m.event_id for m in again.sent] == [m.event_id for m in publisher.sent]


async def test_a_failed_publish_marks_nothing_and_the_retry_keeps_the_event_ids() -> None:
    db = FakeDatabase()
    await publish_a_suspect_version(db)
    publisher = FakePublisher()
    publisher.fail = True

    with pytest.raises(EventBusUnavailable):
        await relay_outbox(db, publisher, topics=TOPICS)
    assert db.state.published == set()

    await relay_outbox(db, publisher, topics=TOPICS)
    assert [m.event_id for m in publisher.sent[: len(db.state.outbox)]] == [
        m.event_id for m in db.state.outbox[: len(publisher.sent)]
    ]
    assert db.state.published


async def test_relay_with_a_small_batch_keeps_the_order() -> None:
    db = FakeDatabase()
    await publish_a_suspect_version(db)
    publisher = FakePublisher()
    while await relay_outbox(db, publisher, topics=TOPICS, limit=2):
        pass
    ids = [m.id for m in publisher.sent]
    assert ids == sorted(ids)
    assert len(ids) == len(db.state.outbox)


async def _records(records: Sequence[AuditRecord]) -> AsyncIterator[AuditRecord]:
    for record in records:
        yield record


async def test_verification_of_an_intact_trail() -> None:
    db = FakeDatabase()
    await publish_a_suspect_version(db)

    result = await verify_audit_trail(_records(db.state.audit))

    assert result.ok
    assert result.records == len(db.state.audit) > 3


async def test_verification_finds_a_tampered_record() -> None:
    db = FakeDatabase()
    await publish_a_suspect_version(db)
    trail = list(db.state.audit)
    victim = trail[2]
    trail[2] = msgspec.structs.replace(victim, after={**(victim.after or {}), "value": 1.0})

    result = await verify_audit_trail(_records(trail))

    assert not result.ok
    assert result.broken_seq == victim.seq
    assert result.records == 2
    assert result.reason == "hash does not match the record's content"
    assert result.stored == victim.hash
    assert result.expected != victim.hash


async def test_verification_finds_a_removed_record() -> None:
    db = FakeDatabase()
    await publish_a_suspect_version(db)
    trail = list(db.state.audit)
    del trail[1]

    result = await verify_audit_trail(_records(trail))

    assert result.broken_seq == db.state.audit[2].seq
    assert result.reason == "prev_hash does not match the previous record's hash"
    assert result.expected == db.state.audit[0].hash
    assert result.stored == db.state.audit[1].hash


async def test_verification_across_chunks() -> None:
    db = FakeDatabase()
    for n in range(3):
        await configure_series(
            db,
            "EURUSD",
            SeriesConfig(window_seconds=n + 1),
            actor="api",
        )
    trail = db.state.audit * 1  # three records
    import app.services.audit as audit_service

    original = audit_service.CHUNK
    audit_service.CHUNK = 2
    try:
        assert (await verify_audit_trail(_records(trail))).records == 3
        broken = [trail[0], trail[1], msgspec.structs.replace(trail[2], actor="mallory")]
        assert (await verify_audit_trail(_records(broken))).broken_seq == trail[2].seq
    finally:
        audit_service.CHUNK = original


async def test_relay_publishes_and_audits_a_payload_it_cannot_decode() -> None:
    db = FakeDatabase()
    async with db.transaction() as store:
        await store.open_journal()
        await store.enqueue(
            [OutboxMessage(event_id="foreign-1", topic="ov", key="ETH-USD", payload=b'{"x": 1}')]
        )
    publisher = FakePublisher()

    assert await relay_outbox(db, publisher, topics=TOPICS) == 1

    assert [m.event_id for m in publisher.sent] == ["foreign-1"]
    (record,) = [r for r in db.state.audit if r.action == "event.published"]
    assert (record.entity_type, record.entity_id) == ("event", "foreign-1")
    assert record.after is not None
    assert record.after["type"] == "unknown"


async def test_the_relay_traces_each_batch_and_records_first_publication_freshness() -> None:
    db = FakeDatabase()
    await publish_a_suspect_version(db)
    queued = [m.event_id for m in db.state.outbox]
    tracing, metrics = RecordingTracing(), RecordingMetrics()

    await relay_outbox(db, FakePublisher(), topics=TOPICS, metrics=metrics, tracing=tracing)
    await relay_outbox(db, FakePublisher(), topics=TOPICS, metrics=metrics, tracing=tracing)

    assert tracing.relayed == [queued]  # one span per batch; nothing pending, no span
    # Version 1 of the snap: its freshness is counted once (the alert is not a publication).
    (freshness,) = metrics.named("publication_freshness")
    assert freshness == ((db.state.now - SNAP).total_seconds(),)
