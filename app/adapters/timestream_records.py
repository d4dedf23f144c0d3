"""The Timestream records of the published events: pure functions, no I/O (docs/timeseries.md).

Two tables:

- official values: one multi-measure record per version of an official value
  (`OfficialValuePublished`);
- quality metrics: the quality of every version (`OfficialValuePublished`) and the quality
  alerts (`QualityAlertRaised`), with their threshold.

A record's identity in Timestream is its dimensions, its time and its measure name. Every
record here has the series id and the version number among its dimensions and the snap as
its time, so each version is a record of its own: a later version never overwrites an
earlier one, and "the latest value" is the highest `version` of a snap.

Idempotence: an event's record is a function of the event alone (its payload is
immutable and its id stable), so a redelivered event writes the identical record, which
Timestream takes again without a change. The record `Version` is `RECORD_VERSION`, the
version of this record layout, not of the official value: a future layout that changes
the measures of an existing record raises it, so that replaying old events then replaces
the old layout's records instead of being rejected.

Times are milliseconds since the epoch (`TimeUnit` MILLISECONDS, and the TIMESTAMP
measure `recorded_at` in the same unit): snaps and knowledge times finer than a
millisecond are truncated to it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from app.domain.events import (
    DomainEvent,
    OfficialValuePublished,
    QualityAlertRaised,
)
from app.domain.quality import Quality

Record: TypeAlias = dict[str, Any]
"""One record as WriteRecords takes it (boto3's shape)."""

Table = Literal["official_values", "quality_metrics"]
"""Which of the two tables a record belongs to (their names are settings)."""

# The version of the record layout (see the module docstring); raise it when the measures
# of an existing record change.
RECORD_VERSION = 1

OFFICIAL_VALUE_MEASURE = "official_value"
QUALITY_MEASURE = "quality"
QUALITY_ALERT_MEASURE = "quality_alert"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_millis(moment: datetime) -> int:
    """Whole milliseconds since the epoch (truncated), of an aware datetime."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _dimension(name: str, value: str) -> dict[str, str]:
    return {"Name": name, "Value": value, "DimensionValueType": "VARCHAR"}


def _double(name: str, value: float) -> dict[str, str]:
    return {"Name": name, "Value": repr(float(value)), "Type": "DOUBLE"}


def _bigint(name: str, value: int) -> dict[str, str]:
    return {"Name": name, "Value": str(int(value)), "Type": "BIGINT"}


def _varchar(name: str, value: str) -> dict[str, str]:
    return {"Name": name, "Value": value, "Type": "VARCHAR"}


def _timestamp(name: str, value: datetime) -> dict[str, str]:
    return {"Name": name, "Value": str(epoch_millis(value)), "Type": "TIMESTAMP"}


def _quality_measures(quality: Quality) -> list[dict[str, str]]:
    return [
        _double("quality_score", quality.score),
        _double("completeness", quality.completeness),
        _double("timeliness", quality.timeliness),
        _double("consistency", quality.consistency),
        _double("validity", quality.validity),
    ]


def _record(
    dimensions: list[dict[str, str]], measure: str, measures: list[dict[str, str]], at: datetime
) -> Record:
    return {
        "Dimensions": dimensions,
        "MeasureName": measure,
        "MeasureValueType": "MULTI",
        "MeasureValues": measures,
        "Time": str(epoch_millis(at)),
        "TimeUnit": "MILLISECONDS",
        "Version": RECORD_VERSION,
    }


def _version_dimensions(reference_data_id: str, version: int) -> list[dict[str, str]]:
    return [_dimension("reference_data_id", reference_data_id), _dimension("version", str(version))]


def official_value_record(event: OfficialValuePublished) -> Record:
    """One version of an official value (the official-values table)."""
    measures = [
        _double("value", event.value),
        _bigint("version", event.version),
        _varchar("status", event.status),
        *_quality_measures(event.quality),
        _bigint("sources_used", len(event.sources_used)),
        _bigint("sources_excluded", len(event.sources_excluded)),
        _timestamp("recorded_at", event.recorded_at),
    ]
    if event.supersedes is not None:
        # A measure cannot be null: the first version has no `supersedes` measure.
        measures.append(_bigint("supersedes", event.supersedes))
    dimensions = [
        *_version_dimensions(event.reference_data_id, event.version),
        _dimension("method", event.method),
    ]
    return _record(dimensions, OFFICIAL_VALUE_MEASURE, measures, event.snap)


def quality_record(event: OfficialValuePublished) -> Record:
    """The quality of one version (the quality-metrics table)."""
    measures = [
        *_quality_measures(event.quality),
        _varchar("status", event.status),
        _timestamp("recorded_at", event.recorded_at),
    ]
    dimensions = _version_dimensions(event.reference_data_id, event.version)
    return _record(dimensions, QUALITY_MEASURE, measures, event.snap)


def quality_alert_record(event: QualityAlertRaised) -> Record:
    """A quality alert: a version scored below its series' threshold (quality metrics)."""
    measures = [
        _double("quality_score", event.quality.score),
        _double("threshold", event.threshold),
        _double("value", event.value),
        _varchar("status", event.status),
        _timestamp("recorded_at", event.recorded_at),
    ]
    dimensions = _version_dimensions(event.reference_data_id, event.version)
    return _record(dimensions, QUALITY_ALERT_MEASURE, measures, event.snap)


def records_for(event: DomainEvent) -> list[tuple[Table, Record]]:
    """The records an event writes, with their table. `ReconciliationFailed` writes none:
    it has no value or score to keep as a time series (it is an alert on the event bus)."""
    if isinstance(event, OfficialValuePublished):
        return [
            ("official_values", official_value_record(event)),
            ("quality_metrics", quality_record(event)),
        ]
    if isinstance(event, QualityAlertRaised):
        return [("quality_metrics", quality_alert_record(event))]
    return []
