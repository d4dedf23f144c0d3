"""The relays: outbox events and the audit trail, published in commit order.

`relay_outbox` publishes committed outbox rows in id order, then marks and audits them.
`relay_audit` follows the audit trail by seq and publishes each record to the audit topic,
then saves its position. Both orders are commit orders (rows and records are written
under the journal lock), so neither skips a late committer nor reorders a series.

At-least-once: a crash between the broker's acknowledgement and the mark (or the saved
position) re-publishes the same events with the same ids (fixed when the row or record
was written), so consumers deduplicate on `event_id`. A failed batch is retried whole, so
a series' events never overtake each other. Marking is conditional (`published_at IS
NULL`), so two relays overlapping during a leadership change audit a publication once.

Publication of an official value or a quality alert is a state change and is audited
(`event.published`, with the topic, partition and offset); publishing an audit record is
not (it would audit itself forever).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import msgspec

from app.domain.dead_letter import storable_text
from app.domain.events import OfficialValuePublished, QualityAlertRaised, decode_event
from app.ports import (
    AuditEntry,
    EventPublisher,
    EventRefused,
    Metrics,
    PendingMessage,
    PipelineDatabase,
    Tracing,
)
from app.services.instrumentation import NULL_METRICS, NULL_TRACING
from app.services.journal import Topics, audit_message, version_entity, write_journal

_log = logging.getLogger("qis.relay")


async def relay_outbox(
    db: PipelineDatabase,
    publisher: EventPublisher,
    *,
    topics: Topics,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    limit: int = 500,
) -> int:
    """Publish up to `limit` pending events; return how many were sent.

    The publishing is traced (`tracing.outbox_relay`), linked to the traces that wrote
    the events."""
    meter = metrics or NULL_METRICS
    async with db.transaction() as store:
        pending = await store.unpublished(limit)
    if not pending:
        return 0
    with (tracing or NULL_TRACING).outbox_relay(pending):
        receipts, refused = await publish_or_set_aside(publisher, pending)
    sent = [(m, r) for m, r in zip(pending, receipts, strict=True) if r is not None]
    async with db.transaction() as store:
        marked = set(await store.mark_published([m.id for m, _ in sent]))
        published = [
            (message, receipt)
            for message, receipt in sent
            if message.id in marked and message.topic != topics.audit
        ]
        if refused:
            await store.set_aside({m.id: reason for m, reason in refused})
        if published or refused:
            at = await store.open_journal()
            entries = [_publication(message, receipt) for message, receipt in published]
            entries += [_set_aside(message, reason) for message, reason in refused]
            await write_journal(store, at, entries, [])
            _record_freshness(meter, [m for m, _ in published], at)
    if refused:
        meter.dead_letters(len(refused), "relay")
        for message, reason in refused:
            _log.error(
                "event set aside",
                extra={"event_id": message.event_id, "topic": message.topic, "error": reason},
            )
    _log.debug("events relayed", extra={"events": len(pending), "marked": len(marked)})
    return len(pending)


async def publish_or_set_aside(
    publisher: EventPublisher, messages: Sequence[PendingMessage]
) -> tuple[list[tuple[int, int] | None], list[tuple[PendingMessage, str]]]:
    """Publish in order; when the bus refuses an event for what it is, publish one by one
    and leave out each refused event. Returns a receipt per message (None: refused) and
    the refused messages with the reason. `EventBusUnavailable` is raised as it is: the
    whole batch is retried later.

    Events sent before a refusal in the same batch are sent again one by one: at least
    once, as always, and consumers deduplicate on the event id.
    """
    try:
        return list(await publisher.publish(messages)), []
    except EventRefused:
        pass
    receipts: list[tuple[int, int] | None] = []
    refused: list[tuple[PendingMessage, str]] = []
    for message in messages:
        try:
            receipts.append((await publisher.publish([message]))[0])
        except EventRefused as exc:
            receipts.append(None)
            refused.append((message, storable_text(str(exc))))
    return receipts, refused


def _set_aside(message: PendingMessage, reason: str) -> AuditEntry:
    return AuditEntry(
        actor="relay",
        action="event.set_aside",
        entity_type="event",
        entity_id=message.event_id,
        before=None,
        after={"event_id": message.event_id, "topic": message.topic, "reason": reason},
    )


def _decoded(message: PendingMessage) -> object | None:
    """The domain event in a row, or None for a payload this release cannot decode.

    Such a row (written by a newer release, or by hand) is published and audited like
    any other: it must never stop the relay.
    """
    try:
        return decode_event(message.payload)
    except msgspec.DecodeError:
        return None


def _publication(message: PendingMessage, receipt: tuple[int, int]) -> AuditEntry:
    event = _decoded(message)
    kind = "unknown" if event is None else type(event).__struct_config__.tag  # type: ignore[attr-defined]
    entity_type, entity_id = "event", message.event_id
    if isinstance(event, OfficialValuePublished | QualityAlertRaised):
        entity_type = "official_value"
        entity_id = version_entity(event.reference_data_id, event.snap, event.version)
    partition, offset = receipt
    return AuditEntry(
        actor="relay",
        action="event.published",
        entity_type=entity_type,
        entity_id=entity_id,
        before=None,
        after={
            "event_id": message.event_id,
            "type": kind,
            "topic": message.topic,
            "partition": partition,
            "offset": offset,
        },
    )


def _record_freshness(meter: Metrics, messages: list[PendingMessage], at: datetime) -> None:
    """Snap -> first version published, for version 1 events (revisions are late data)."""
    for message in messages:
        event = _decoded(message)
        if isinstance(event, OfficialValuePublished) and event.version == 1:
            meter.publication_freshness((at - event.snap).total_seconds())


AUDIT_RELAY = "audit"


async def relay_audit(
    db: PipelineDatabase,
    publisher: EventPublisher,
    *,
    topics: Topics,
    limit: int = 500,
    metrics: Metrics | None = None,
) -> int:
    """Publish up to `limit` audit records after the saved position; return how many."""
    async with db.transaction() as store:
        position = await store.relay_position(AUDIT_RELAY)
        records = await store.audit_after(position, limit)
    if not records:
        return 0
    messages = [audit_message(record, topics.audit) for record in records]
    _, refused = await publish_or_set_aside(publisher, messages)
    for message, reason in refused:
        # The record stays in the audit trail (the source of truth); only its copy on the
        # audit topic is missing. Auditing this would audit itself forever: logged, counted.
        _log.error("audit record not relayed", extra={"seq": message.id, "error": reason})
    if refused:
        (metrics or NULL_METRICS).dead_letters(len(refused), "audit-relay")
    async with db.transaction() as store:
        await store.save_relay_position(AUDIT_RELAY, records[-1].seq or position)
    return len(records)
