"""Events for the Timestream sink's tests, and an in-memory WriteRecords client.

moto's Timestream accepts WriteRecords but its queries return no rows, so the sink is
tested at its boundary: the calls it makes (unit tests, with `RecordingClient`) and the
answers of the moto server (tests/integration/test_timestream_moto.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from app.domain.events import (
    DomainEvent,
    encode_event,
    official_value_published,
    quality_alert_raised,
)
from app.domain.quality import Quality
from app.domain.reconciliation import Exclusion
from app.domain.series import QualityPolicy
from app.domain.versions import OfficialValue
from app.ports import SinkEvent

SNAP = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def official(
    series: str = "TS.EURUSD",
    snap: datetime = SNAP,
    version: int = 1,
    *,
    value: float = 1.08418,
    status: str = "official",
) -> OfficialValue:
    score = 1.0 if status == "official" else 0.5
    return OfficialValue(
        reference_data_id=series,
        snap=snap,
        version=version,
        value=value,
        status=status,  # type: ignore[arg-type]
        method="median",
        sources_used=("bloomberg", "ecb", "refinitiv"),
        sources_excluded=(Exclusion(source="xetra", reason="outlier"),) if version > 1 else (),
        quality=Quality(
            score=score, completeness=1.0, timeliness=0.75, consistency=score, validity=1.0
        ),
        supersedes=version - 1 if version > 1 else None,
        recorded_at=snap + timedelta(seconds=3, microseconds=702_477),
    )


def sink_event(event: DomainEvent, position: int) -> SinkEvent:
    topic = "qis.official-values.v1"
    if event.__struct_config__.tag == "quality_alert_raised":
        topic = "qis.quality-alerts.v1"
    return SinkEvent(
        position=position,
        event_id=event.event_id,
        topic=topic,
        key=getattr(event, "reference_data_id", ""),
        payload=encode_event(event),
        event=event,
    )


def publications(count: int, series: str = "TS.EURUSD", first_position: int = 1) -> list[SinkEvent]:
    """`count` OfficialValuePublished events of consecutive minutes, one version each."""
    return [
        sink_event(
            official_value_published(official(series, SNAP + timedelta(minutes=i)), ["o1"]),
            first_position + i,
        )
        for i in range(count)
    ]


def alert(version: OfficialValue, position: int, threshold: float = 0.8) -> SinkEvent:
    policy = QualityPolicy(threshold=threshold)
    return sink_event(quality_alert_raised(version, policy), position)


def client_error(code: str, message: str = "", **extra: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, **extra}, "WriteRecords")


Outcome = Exception | Callable[[list[dict[str, Any]]], Exception | None] | None


class RecordingClient:
    """`write_records` that records every call; each call takes the next scripted
    outcome (None: accepted; an exception: raised; a function of the records: its
    exception, if any, raised). Unscripted calls are accepted."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, str, list[dict[str, Any]]]] = []

    def write_records(self, **call: Any) -> dict[str, Any]:
        """WriteRecords(DatabaseName=..., TableName=..., Records=[...])."""
        assert set(call) == {"DatabaseName", "TableName", "Records"}
        database, table, records = call["DatabaseName"], call["TableName"], call["Records"]
        self.calls.append((database, table, copy.deepcopy(records)))
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if callable(outcome) and not isinstance(outcome, Exception):
            outcome = outcome(records)
        if outcome is not None:
            raise outcome
        total = len(records)
        return {"RecordsIngested": {"Total": total, "MemoryStore": total, "MagneticStore": 0}}

    def tables(self) -> list[tuple[str, int]]:
        """(table, number of records) of each call, in call order."""
        return [(table, len(records)) for _db, table, records in self.calls]


class MemoryReports:
    """The rejected-records location: `create(key, data)` like `S3Lake.create`."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.bucket = "memory"
        self.prefix = "rejected-records/"
        self.objects: dict[str, bytes] = {}
        self.fail = fail

    def create(self, key: str, data: bytes) -> bool:
        if self.fail is not None:
            raise self.fail
        if key in self.objects:
            assert self.objects[key] == data
            return False
        self.objects[key] = data
        return True
