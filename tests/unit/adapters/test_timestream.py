"""TimestreamSink at its boundary: the WriteRecords calls it makes and what it does with the
answers, with an in-memory client that records the calls.

moto's Timestream accepts WriteRecords but its queries return no rows, so nothing here
(or in the integration test against the moto server) reads the records back from
Timestream: the records are checked as they are sent.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from app.adapters.timestream import TimestreamSink, timestream_sink
from app.adapters.timestream_records import (
    RECORD_VERSION,
    epoch_millis,
    official_value_record,
    records_for,
)
from app.domain.events import official_value_published, reconciliation_failed
from app.ports import EventSink, SinkUnavailable
from app.settings import TimestreamSettings

from .timestream_fakes import (
    SNAP,
    MemoryReports,
    RecordingClient,
    alert,
    client_error,
    official,
    publications,
    sink_event,
)

TABLES: Any = {"official_values": "officialDataValues", "quality_metrics": "qualityMetrics"}
SNAP_MS = 1772461800000  # 2026-03-02T14:30:00Z
RECORDED_MS = SNAP_MS + 3702  # recorded_at = snap + 3.702477 s, truncated to the ms


def sink(client: RecordingClient, reports: MemoryReports | None = None, **kwargs: Any) -> Any:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    made = TimestreamSink(
        client,
        reports or MemoryReports(),  # type: ignore[arg-type]
        database="qis-test",
        tables=TABLES,
        sleep=sleep,
        **kwargs,
    )
    made.sleeps = sleeps  # type: ignore[attr-defined]
    return made


def deliver(target: TimestreamSink, events: Any) -> int:
    return asyncio.run(target.deliver(events))


def measures(record: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {m["Name"]: (m["Type"], m["Value"]) for m in record["MeasureValues"]}


def dimensions(record: dict[str, Any]) -> dict[str, str]:
    assert all(d["DimensionValueType"] == "VARCHAR" for d in record["Dimensions"])
    return {d["Name"]: d["Value"] for d in record["Dimensions"]}


# ---- record shapes -------------------------------------------------------------------


def test_an_official_value_is_one_multi_measure_record_per_version() -> None:
    event = official_value_published(official(version=2, status="suspect", value=1.5), ["o"])
    record = official_value_record(event)
    assert record["MeasureName"] == "official_value"
    assert record["MeasureValueType"] == "MULTI"
    assert record["Time"] == str(SNAP_MS)
    assert record["TimeUnit"] == "MILLISECONDS"
    assert record["Version"] == RECORD_VERSION == 1
    assert dimensions(record) == {
        "reference_data_id": "TS.EURUSD",
        "version": "2",
        "method": "median",
    }
    assert measures(record) == {
        "value": ("DOUBLE", "1.5"),
        "version": ("BIGINT", "2"),
        "status": ("VARCHAR", "suspect"),
        "quality_score": ("DOUBLE", "0.5"),
        "completeness": ("DOUBLE", "1.0"),
        "timeliness": ("DOUBLE", "0.75"),
        "consistency": ("DOUBLE", "0.5"),
        "validity": ("DOUBLE", "1.0"),
        "sources_used": ("BIGINT", "3"),
        "sources_excluded": ("BIGINT", "1"),
        "recorded_at": ("TIMESTAMP", str(RECORDED_MS)),
        "supersedes": ("BIGINT", "1"),
    }


def test_a_first_version_has_no_supersedes_measure() -> None:
    record = official_value_record(official_value_published(official(version=1), ["o"]))
    assert "supersedes" not in measures(record)
    assert measures(record)["value"] == ("DOUBLE", "1.08418")


def test_a_publication_also_writes_its_quality_and_an_alert_writes_the_threshold() -> None:
    version = official(version=3, status="suspect")
    published = records_for(official_value_published(version, ["o"]))
    assert [table for table, _ in published] == ["official_values", "quality_metrics"]
    quality = published[1][1]
    assert quality["MeasureName"] == "quality"
    assert quality["Time"] == str(SNAP_MS)
    assert dimensions(quality) == {"reference_data_id": "TS.EURUSD", "version": "3"}
    assert measures(quality) == {
        "quality_score": ("DOUBLE", "0.5"),
        "completeness": ("DOUBLE", "1.0"),
        "timeliness": ("DOUBLE", "0.75"),
        "consistency": ("DOUBLE", "0.5"),
        "validity": ("DOUBLE", "1.0"),
        "status": ("VARCHAR", "suspect"),
        "recorded_at": ("TIMESTAMP", str(RECORDED_MS)),
    }

    [(table, record)] = records_for(alert(version, 1, threshold=0.8).event)
    assert table == "quality_metrics"
    assert record["MeasureName"] == "quality_alert"
    assert dimensions(record) == {"reference_data_id": "TS.EURUSD", "version": "3"}
    assert measures(record) == {
        "quality_score": ("DOUBLE", "0.5"),
        "threshold": ("DOUBLE", "0.8"),
        "value": ("DOUBLE", "1.08418"),
        "status": ("VARCHAR", "suspect"),
        "recorded_at": ("TIMESTAMP", str(RECORDED_MS)),
    }


def test_a_reconciliation_failure_writes_no_record() -> None:
    failed = reconciliation_failed("TS.X", SNAP, stage="window", error="boom", failed_at=SNAP)
    assert records_for(failed) == []


def test_versions_are_distinct_records_and_a_redelivery_is_identical() -> None:
    """A record's identity is (dimensions, time, measure name): versions differ in the
    `version` dimension, so a later one cannot overwrite an earlier one; the same event
    gives the same record byte for byte."""

    def identity(record: dict[str, Any]) -> tuple[Any, ...]:
        return (tuple(sorted(dimensions(record).items())), record["Time"], record["MeasureName"])

    first = official_value_record(official_value_published(official(version=1), ["o"]))
    second = official_value_record(official_value_published(official(version=2), ["o"]))
    assert identity(first) != identity(second)
    again = official_value_record(official_value_published(official(version=1), ["o"]))
    assert again == first


def test_epoch_millis_truncates_and_reads_any_offset() -> None:
    assert epoch_millis(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert epoch_millis(datetime(1970, 1, 1, 0, 0, 1, 999, tzinfo=UTC)) == 1000
    paris = datetime(2026, 3, 2, 15, 30, tzinfo=timezone(timedelta(hours=1)))
    assert epoch_millis(paris) == SNAP_MS


# ---- delivery ------------------------------------------------------------------------


def test_the_sink_is_an_event_sink_named_timestream() -> None:
    made = sink(RecordingClient(), batch_size=250)
    assert isinstance(made, EventSink)
    assert (made.name, made.batch_size) == ("timestream", 250)


def test_250_publications_are_written_100_100_50_per_table_in_order() -> None:
    client = RecordingClient()
    events = publications(250)
    assert deliver(sink(client), events) == 0
    assert client.tables() == [
        ("officialDataValues", 100),
        ("officialDataValues", 100),
        ("officialDataValues", 50),
        ("qualityMetrics", 100),
        ("qualityMetrics", 100),
        ("qualityMetrics", 50),
    ]
    assert {db for db, _table, _records in client.calls} == {"qis-test"}
    sent = [
        r for _db, table, records in client.calls if table == "officialDataValues" for r in records
    ]
    assert [int(r["Time"]) for r in sent] == [SNAP_MS + 60_000 * i for i in range(250)]
    assert sent == [official_value_record(e.event) for e in events]  # type: ignore[arg-type]


def test_alerts_and_publications_share_the_quality_table_in_event_order() -> None:
    client = RecordingClient()
    suspect = official(version=1, status="suspect")
    events = [
        sink_event(official_value_published(suspect, ["o"]), 7),
        alert(suspect, 8),
        sink_event(
            reconciliation_failed("TS.X", SNAP, stage="window", error="e", failed_at=SNAP), 9
        ),
    ]
    assert deliver(sink(client), events) == 0
    assert client.tables() == [("officialDataValues", 1), ("qualityMetrics", 2)]
    assert [r["MeasureName"] for r in client.calls[1][2]] == ["quality", "quality_alert"]


def test_nothing_to_write_makes_no_call() -> None:
    client = RecordingClient()
    assert deliver(sink(client), []) == 0
    assert client.calls == []


def test_throttling_is_retried_with_bounded_backoff_then_written() -> None:
    client = RecordingClient(
        client_error("ThrottlingException"),
        client_error("InternalServerException"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    )
    made = sink(client, retry_base_seconds=0.5, retry_max_seconds=1.5)
    assert deliver(made, publications(1)) == 0
    # Three failures, then the official record; then the quality record at once.
    assert client.tables() == [("officialDataValues", 1)] * 4 + [("qualityMetrics", 1)]
    assert made.sleeps == [0.5, 1.0, 1.5]


def test_throttling_that_lasts_fails_the_batch_after_max_attempts() -> None:
    client = RecordingClient(*[client_error("ThrottlingException", "slow down")] * 10)
    made = sink(client, max_attempts=4, retry_base_seconds=0.1, retry_max_seconds=10.0)
    with pytest.raises(SinkUnavailable, match=r"not written after 4 attempts.*slow down"):
        deliver(made, publications(3))
    assert client.tables() == [("officialDataValues", 3)] * 4
    assert made.sleeps == [0.1, 0.2, 0.4]


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "AccessDeniedException"])
def test_a_missing_table_or_permission_fails_at_once(code: str) -> None:
    client = RecordingClient(client_error(code, "no"))
    made = sink(client)
    with pytest.raises(SinkUnavailable, match=code):
        deliver(made, publications(2))
    assert len(client.calls) == 1
    assert made.sleeps == []


def _rejecting(rejected: list[dict[str, Any]]) -> Any:
    return client_error("RejectedRecordsException", "rejected", RejectedRecords=rejected)


def test_rejected_records_are_reported_to_s3_and_counted_per_event() -> None:
    reports = MemoryReports()
    events = publications(5, first_position=40)
    client = RecordingClient(
        _rejecting(
            [
                {"RecordIndex": 1, "Reason": "The record timestamp is outside the time range"},
                {"RecordIndex": 3, "Reason": "Dimension value too long"},
            ]
        ),
        _rejecting(
            [{"RecordIndex": 1, "Reason": "The record timestamp is outside the time range"}]
        ),
    )
    # Event 41 has both records rejected, event 43 one: two events refused.
    assert deliver(sink(client, reports), events) == 2
    assert client.tables() == [("officialDataValues", 5), ("qualityMetrics", 5)]
    by_table = {key.split("/")[0]: json.loads(body) for key, body in reports.objects.items()}
    assert set(by_table) == {"officialDataValues", "qualityMetrics"}
    official_report = by_table["officialDataValues"]
    assert official_report["database"] == "qis-test"
    assert [
        (r["event_id"], r["position"], r["reason"], r["existing_version"])
        for r in official_report["rejected"]
    ] == [
        (events[1].event_id, 41, "The record timestamp is outside the time range", None),
        (events[3].event_id, 43, "Dimension value too long", None),
    ]
    assert official_report["rejected"][0]["record"] == official_value_record(events[1].event)  # type: ignore[arg-type]
    key = next(k for k in reports.objects if k.startswith("officialDataValues/"))
    assert key.startswith("officialDataValues/00000000000000000041-00000000000000000043-")


def test_a_redelivery_that_is_rejected_again_reports_the_same_object() -> None:
    reports = MemoryReports()
    events = publications(2)
    rejected = [{"RecordIndex": 0, "Reason": "Measure value too long"}]
    for _ in range(2):
        client = RecordingClient(_rejecting(rejected), None)
        assert deliver(sink(client, reports), events) == 1
    assert len(reports.objects) == 1


def test_records_already_written_are_not_errors() -> None:
    """ExistingVersion >= the record's Version: the table holds this record or a newer
    layout of it (a redelivery); not reported, not counted."""
    reports = MemoryReports()
    client = RecordingClient(
        _rejecting(
            [
                {"RecordIndex": 0, "Reason": "duplicate", "ExistingVersion": RECORD_VERSION},
                {"RecordIndex": 1, "Reason": "duplicate", "ExistingVersion": RECORD_VERSION + 1},
            ]
        ),
    )
    assert deliver(sink(client, reports), publications(2)) == 0
    assert reports.objects == {}


def test_a_conflict_with_an_older_version_is_reported() -> None:
    reports = MemoryReports()
    client = RecordingClient(
        _rejecting([{"RecordIndex": 0, "Reason": "conflict", "ExistingVersion": 0}])
    )
    assert deliver(sink(client, reports), publications(1)) == 1
    [body] = reports.objects.values()
    assert json.loads(body)["rejected"][0]["existing_version"] == 0


def test_an_invalid_call_is_split_to_find_the_invalid_record() -> None:
    events = publications(3)
    bad_time = official_value_record(events[1].event)["Time"]  # type: ignore[arg-type]

    def invalid_if_bad(records: list[dict[str, Any]]) -> Exception | None:
        if any(r["Time"] == bad_time for r in records):
            return client_error("ValidationException", "Invalid measure value")
        return None

    reports = MemoryReports()
    client = RecordingClient(*[invalid_if_bad] * 4)
    assert deliver(sink(client, reports), events) == 1
    assert client.tables() == [("officialDataValues", 3)] + [("officialDataValues", 1)] * 3 + [
        ("qualityMetrics", 3)
    ]
    [body] = reports.objects.values()
    [entry] = json.loads(body)["rejected"]
    assert entry["event_id"] == events[1].event_id
    assert entry["reason"] == "ValidationException: Invalid measure value"


def test_rejections_that_cannot_be_reported_fail_the_batch() -> None:
    reports = MemoryReports(fail=client_error("AccessDenied", "no s3"))
    client = RecordingClient(_rejecting([{"RecordIndex": 0, "Reason": "too long"}]))
    with pytest.raises(SinkUnavailable, match="not reported to s3://memory/rejected-records/"):
        deliver(sink(client, reports), publications(1))


def test_a_rejection_without_a_usable_index_fails_the_batch() -> None:
    client = RecordingClient(_rejecting([{"RecordIndex": 5, "Reason": "?"}]))
    with pytest.raises(SinkUnavailable, match="index 5 of 1"):
        deliver(sink(client), publications(1))


# ---- factory -------------------------------------------------------------------------


def test_the_factory_builds_nothing_when_disabled() -> None:
    assert timestream_sink(TimestreamSettings()) is None


def test_the_factory_builds_the_configured_sink() -> None:
    settings = TimestreamSettings(
        enabled=True,
        database="qis-x",
        official_values_table="ov",
        quality_metrics_table="qm",
        batch_size=42,
        max_attempts=3,
        rejected_bucket="rej",
        rejected_prefix="p/",
        access_key_id="testing",
        secret_access_key="testing",
    )
    made = timestream_sink(settings)
    assert made is not None
    assert (made.name, made.database, made.batch_size, made.max_attempts) == (
        "timestream",
        "qis-x",
        42,
        3,
    )
    assert made.tables == {"official_values": "ov", "quality_metrics": "qm"}
    assert (made.rejected.bucket, made.rejected.prefix) == ("rej", "p/")
    assert made.client.meta.service_model.service_name == "timestream-write"
    assert made.client.meta.endpoint_url == "http://127.0.0.1:59000"
