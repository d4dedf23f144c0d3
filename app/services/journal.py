"""The journal: a transaction's audit records and outbox events, written last, together.

Every state change is audited in the transaction that makes it (exactly once). The relay
mirrors every audit record to `qis.audit.v1` as an `AuditRecordAppended` event, reading
the trail itself in seq order (`publish.relay_audit`), so a consumer can mirror the trail
and re-verify its chain outside the database. Outbox events get the current trace
context as headers (`Tracing.trace_headers`), so the relay's produce joins the writer's
trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from app.domain.audit import AuditRecord
from app.domain.events import SCHEMA_VERSION, DomainEvent, derive_event_id, encode_event
from app.domain.timestamps import rfc3339
from app.ports import AuditEntry, OutboxMessage, PendingMessage, PipelineStore


class TopicNames(Protocol):
    """Configuration naming the event topics (`app.settings.KafkaSettings` has them)."""

    @property
    def official_values_topic(self) -> str: ...

    @property
    def quality_alerts_topic(self) -> str: ...

    @property
    def audit_topic(self) -> str: ...


class Topics(msgspec.Struct, frozen=True, kw_only=True):
    """Where each kind of event is published."""

    official_values: str = "qis.official-values.v1"
    quality_alerts: str = "qis.quality-alerts.v1"
    audit: str = "qis.audit.v1"

    @classmethod
    def from_settings(cls, kafka: TopicNames) -> Topics:
        """The topics configured in `kafka` (the Kafka settings)."""
        return cls(
            official_values=kafka.official_values_topic,
            quality_alerts=kafka.quality_alerts_topic,
            audit=kafka.audit_topic,
        )


class AuditRecordAppended(
    msgspec.Struct, frozen=True, kw_only=True, tag="audit_record_appended", tag_field="type"
):
    """`qis.audit.v1` payload: one audit record exactly as chained (id from its hash)."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    seq: int
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime
    prev_hash: str
    hash: str


_encode = msgspec.json.Encoder()


def event_message(
    event: DomainEvent, topic: str, key: str, headers: dict[str, str]
) -> OutboxMessage:
    """A domain event as an outbox row."""
    return OutboxMessage(
        event_id=event.event_id, topic=topic, key=key, payload=encode_event(event), headers=headers
    )


def audit_event(record: AuditRecord) -> AuditRecordAppended:
    """The audit topic's event for a stored record."""
    if record.seq is None:
        raise ValueError("only a stored record (with its seq) is published")
    return AuditRecordAppended(
        event_id=derive_event_id("audit_record_appended", record.hash),
        seq=record.seq,
        actor=record.actor,
        action=record.action,
        entity_type=record.entity_type,
        entity_id=record.entity_id,
        before=record.before,
        after=record.after,
        at=record.at,
        prev_hash=record.prev_hash,
        hash=record.hash,
    )


async def write_journal(
    store: PipelineStore,
    at: datetime,
    entries: Sequence[AuditEntry],
    messages: Sequence[OutboxMessage],
) -> list[AuditRecord]:
    """Append the audit records, then queue `messages` for the relay.

    The caller has called `store.open_journal()` (which returned `at`).
    """
    records = await store.append_audit(entries, at)
    await store.enqueue(messages)
    return records


def audit_message(record: AuditRecord, topic: str) -> PendingMessage:
    """A stored audit record as the audit topic's event, keyed by the entity's series."""
    event = audit_event(record)
    assert record.seq is not None  # audit_event checked it
    return PendingMessage(
        id=record.seq,
        event_id=event.event_id,
        topic=topic,
        key=record.entity_id.split("/", 1)[0],
        payload=_encode.encode(event),
    )


def snap_entity(reference_data_id: str, snap: datetime) -> str:
    """Audit entity id of one (series, snap): `ETH-USD/2026-01-15T14:00:00Z`."""
    return f"{reference_data_id}/{iso(snap)}"


def version_entity(reference_data_id: str, snap: datetime, version: int) -> str:
    """Audit entity id of one official value version: `ETH-USD/2026-01-15T14:00:00Z/v2`."""
    return f"{snap_entity(reference_data_id, snap)}/v{version}"


def json_native(value: Any) -> Any:
    """`value` as plain JSON types (lists, not tuples): exactly what the audit trail reads back."""
    return msgspec.json.decode(_encode.encode(value))


def iso(ts: datetime) -> str:
    """RFC 3339 in UTC with `Z`, as the API renders timestamps (`domain.timestamps`)."""
    return rfc3339(ts)
