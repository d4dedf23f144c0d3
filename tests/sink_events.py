"""Sink events as the sink relay hands them over: real domain events, in outbox order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from app.domain.events import (
    DomainEvent,
    OfficialValuePublished,
    encode_event,
    events_for_version,
    reconciliation_failed,
)
from app.domain.quality import Quality
from app.domain.series import QualityPolicy
from app.domain.versions import OfficialValue
from app.ports import SinkEvent

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
OFFICIAL_TOPIC = "qis.official-values.v1"
ALERTS_TOPIC = "qis.quality-alerts.v1"
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def official(
    series: str,
    version: int,
    score: float,
    *,
    threshold: float = QualityPolicy().threshold,
    snap: datetime = SNAP,
) -> OfficialValue:
    """Version `version` of the series' official value at `snap`, scored `score`: suspect
    below the series' `threshold` (the default policy's 0.95)."""
    return OfficialValue(
        reference_data_id=series,
        snap=snap,
        version=version,
        value=100.0 + version / 1000,
        status="official" if score >= threshold else "suspect",
        method="median",
        sources_used=("bloomberg", "refinitiv"),
        sources_excluded=(),
        quality=Quality(
            score=score, completeness=1.0, timeliness=1.0, consistency=score, validity=1.0
        ),
        supersedes=version - 1 if version > 1 else None,
        recorded_at=snap + timedelta(seconds=3 * version, microseconds=123456),
    )


class Outbox:
    """Numbers events like outbox rows (positions from 1), carrying a trace header."""

    def __init__(self, traced: bool = True) -> None:
        self.position = 0
        self.headers = {"X-Amzn-Trace-Id": TRACE_ID, "traceparent": "00-x-y-01"} if traced else {}

    def versions(self, values: Sequence[OfficialValue]) -> list[SinkEvent]:
        """The events each version emits (the publication, then an alert when suspect)."""
        out: list[SinkEvent] = []
        for value in values:
            for event in events_for_version(value, ["o1", "o2"], QualityPolicy()):
                topic = (
                    OFFICIAL_TOPIC if isinstance(event, OfficialValuePublished) else ALERTS_TOPIC
                )
                out.append(self._next(event, topic, value.reference_data_id))
        return out

    def failure(self, series: str, error: str = "window closing failed") -> SinkEvent:
        event = reconciliation_failed(
            series, SNAP, stage="window", error=error, failed_at=SNAP + timedelta(minutes=1)
        )
        return self._next(event, ALERTS_TOPIC, series)

    def _next(self, event: DomainEvent, topic: str, key: str) -> SinkEvent:
        self.position += 1
        return SinkEvent(
            position=self.position,
            event_id=event.event_id,
            topic=topic,
            key=key,
            payload=encode_event(event),
            event=event,
            headers=dict(self.headers),
        )


def interleaved(
    series: Sequence[str], versions: int, score: float = 0.99
) -> Iterator[OfficialValue]:
    """Versions 1..`versions` of every series, round-robin (v1 of each, then v2, ...)."""
    for version in range(1, versions + 1):
        for name in series:
            yield official(name, version, score)
