"""Domain events, past tense, as one msgspec tagged union (`"type"` names the event).

Every event carries a stable `event_id` derived from what the event is about, never from
when it was produced, so a redelivered or re-produced event keeps its id and consumers
can deduplicate on it. `schema_version` lets the payload evolve without guessing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from hashlib import sha1

import msgspec

from app.domain.observation import _utc_micros
from app.domain.quality import Quality, QualityStatus
from app.domain.reconciliation import Exclusion
from app.domain.series import Method, QualityPolicy
from app.domain.versions import OfficialValue

SCHEMA_VERSION = 1
# Fixed forever: changing it would change every event id.
_EVENT_NAMESPACE = uuid.UUID("552ef97f-d346-4f66-9d77-52ecd7bcc268")
_NAMESPACE_BYTES = _EVENT_NAMESPACE.bytes


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event has."""

    event_id: str
    schema_version: int = SCHEMA_VERSION


class OfficialValuePublished(Event, frozen=True, kw_only=True, tag="official_value_published"):
    """A new version of an official value was recorded (fields as the HTTP official value)."""

    reference_data_id: str
    snap: datetime
    version: int
    value: float
    status: QualityStatus
    method: Method
    sources_used: tuple[str, ...]
    sources_excluded: tuple[Exclusion, ...]
    quality: Quality
    supersedes: int | None
    recorded_at: datetime
    observation_ids: tuple[str, ...]


class QualityAlertRaised(Event, frozen=True, kw_only=True, tag="quality_alert_raised"):
    """A version was published with a quality score below its series' threshold."""

    reference_data_id: str
    snap: datetime
    version: int
    value: float
    status: QualityStatus
    quality: Quality
    threshold: float
    recorded_at: datetime


class ReconciliationFailed(Event, frozen=True, kw_only=True, tag="reconciliation_failed"):
    """A snap could not be reconciled and was set aside; a person must look.

    `stage` says who gave up: the worker (`reconcile`: the observations that touched the
    snap were dead-lettered) or the scheduler (`window`: closing the snap's window failed;
    the snap is marked `failed` until new observations arrive for it).
    """

    reference_data_id: str
    snap: datetime
    stage: str
    error: str
    failed_at: datetime


DomainEvent = OfficialValuePublished | QualityAlertRaised | ReconciliationFailed

_ENCODER = msgspec.json.Encoder()
_DECODER: msgspec.json.Decoder[DomainEvent] = msgspec.json.Decoder(DomainEvent)


def derive_event_id(kind: str, *parts: str | int) -> str:
    """Deterministic UUID (v5) of an event kind and the identity of what it is about:
    `str(uuid.uuid5(_EVENT_NAMESPACE, json))` of `[kind, *parts]` as compact JSON, made
    without the `UUID` object (a third of the cost; every version derives two or three)."""
    name = msgspec.json.encode([kind, *parts])
    # SHA-1 because UUID v5 is defined on it: an identifier, not a security boundary.
    digest = bytearray(sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def official_value_published(
    official: OfficialValue, observation_ids: Iterable[str]
) -> OfficialValuePublished:
    """The event announcing a version; one id per (series, snap, version)."""
    return OfficialValuePublished(
        event_id=derive_event_id(
            "official_value_published",
            official.reference_data_id,
            _utc_micros(official.snap),
            official.version,
        ),
        reference_data_id=official.reference_data_id,
        snap=official.snap,
        version=official.version,
        value=official.value,
        status=official.status,
        method=official.method,
        sources_used=official.sources_used,
        sources_excluded=official.sources_excluded,
        quality=official.quality,
        supersedes=official.supersedes,
        recorded_at=official.recorded_at,
        observation_ids=tuple(observation_ids),
    )


def quality_alert_raised(official: OfficialValue, policy: QualityPolicy) -> QualityAlertRaised:
    """The alert for a suspect version; one id per (series, snap, version)."""
    return QualityAlertRaised(
        event_id=derive_event_id(
            "quality_alert_raised",
            official.reference_data_id,
            _utc_micros(official.snap),
            official.version,
        ),
        reference_data_id=official.reference_data_id,
        snap=official.snap,
        version=official.version,
        value=official.value,
        status=official.status,
        quality=official.quality,
        threshold=policy.threshold,
        recorded_at=official.recorded_at,
    )


def events_for_version(
    official: OfficialValue, observation_ids: Iterable[str], policy: QualityPolicy
) -> list[OfficialValuePublished | QualityAlertRaised]:
    """Events a new version emits: always the publication, plus an alert when suspect."""
    events: list[OfficialValuePublished | QualityAlertRaised] = [
        official_value_published(official, observation_ids)
    ]
    if official.status == "suspect":
        events.append(quality_alert_raised(official, policy))
    return events


def reconciliation_failed(
    reference_data_id: str, snap: datetime, *, stage: str, error: str, failed_at: datetime
) -> ReconciliationFailed:
    """The alert for a snap set aside; one id per (series, snap, stage, error)."""
    return ReconciliationFailed(
        event_id=derive_event_id(
            "reconciliation_failed", reference_data_id, _utc_micros(snap), stage, error
        ),
        reference_data_id=reference_data_id,
        snap=snap,
        stage=stage,
        error=error,
        failed_at=failed_at,
    )


def encode_event(event: DomainEvent) -> bytes:
    """JSON payload of an event, with its `type` tag."""
    return _ENCODER.encode(event)


def decode_event(payload: bytes) -> DomainEvent:
    """Parse a payload produced by `encode_event` back into its event struct."""
    return _DECODER.decode(payload)
