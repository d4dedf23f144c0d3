"""Timestream on the stack's moto server (timestream-write and S3 on one port).

moto 5.2.5 accepts WriteRecords (multi-measure records, without validating their values)
and answers with RecordsIngested, but its queries return no rows and it never rejects a
record. So these tests check what can be checked at the adapter's boundary: the
database and tables `qis timestream setup` creates (with their retention), that every
WriteRecords call the sink makes is accepted with RecordsIngested equal to what was sent
in calls of at most 100 records, and that rejected records (the rejection is injected in
front of the real client, since moto never rejects) are reported as a JSON object to a
bucket of the moto server. The records' shape is checked in
tests/unit/adapters/test_timestream.py. Each test uses a database and a bucket of its own.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app.adapters.s3_lake import s3_client
from app.adapters.timestream import timestream_client, timestream_sink
from app.adapters.timestream_records import official_value_record
from app.settings import Settings, TimestreamSettings
from tests.integration.lake_helpers import empty_bucket
from tests.unit.adapters.timestream_fakes import alert, client_error, official, publications

pytestmark = pytest.mark.integration


def _settings(settings: Settings, **overrides: Any) -> TimestreamSettings:
    unique = uuid.uuid4().hex[:12]
    values: dict[str, Any] = {
        "enabled": True,
        "endpoint_url": settings.lake.endpoint_url,
        "region": settings.lake.region,
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "database": f"qis-test-{unique}",
        "rejected_bucket": f"qis-test-rejected-{unique}",
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.05,
    }
    return TimestreamSettings(**{**values, **overrides})


def _drop(config: TimestreamSettings) -> None:
    client = timestream_client(config)
    tables = client.list_tables(DatabaseName=config.database).get("Tables", [])
    for table in tables:
        client.delete_table(DatabaseName=config.database, TableName=table["TableName"])
    client.delete_database(DatabaseName=config.database)
    s3 = s3_client(config)
    empty_bucket(s3, config.rejected_bucket)
    s3.delete_bucket(Bucket=config.rejected_bucket)


@pytest.fixture
def timeseries(settings: Settings) -> Iterator[TimestreamSettings]:
    """A database, tables and rejected-records bucket of this test's own on moto."""
    from app.adapters.timestream import ensure_timeseries

    config = _settings(settings)
    ensure_timeseries(config)
    try:
        yield config
    finally:
        _drop(config)


class Recorder:
    """The real client, with each WriteRecords call and its answer recorded; `reject`
    maps a record's Time to a rejection injected instead of the call (moto never
    rejects), the other records of that call being written for real."""

    def __init__(self, client: Any, reject: dict[str, dict[str, Any]] | None = None) -> None:
        self.client = client
        self.reject = reject or {}
        self.calls: list[tuple[str, int, dict[str, Any]]] = []

    def write_records(self, **call: Any) -> dict[str, Any]:
        records = call["Records"]
        rejected = [
            {"RecordIndex": i, **self.reject[r["Time"]]}
            for i, r in enumerate(records)
            if r["Time"] in self.reject
        ]
        kept = [r for r in records if r["Time"] not in self.reject]
        answer: dict[str, Any] = self.client.write_records(**{**call, "Records": kept})
        self.calls.append((call["TableName"], len(kept), answer["RecordsIngested"]))
        if rejected:
            raise client_error("RejectedRecordsException", "rejected", RejectedRecords=rejected)
        return answer


def test_setup_creates_the_database_and_tables_with_retention_once(settings: Settings) -> None:
    from app.adapters.timestream import ensure_timeseries

    config = _settings(settings)
    try:
        first = ensure_timeseries(config)
        assert first == [
            (f"s3://{config.rejected_bucket}", "created"),
            (config.database, "created"),
            (f"{config.database}.officialDataValues", "created"),
            (f"{config.database}.qualityMetrics", "created"),
        ]
        assert [state for _, state in ensure_timeseries(config)] == ["exists"] * 4

        client = timestream_client(config)
        tables = {
            name: client.describe_table(DatabaseName=config.database, TableName=name)["Table"]
            for name in ("officialDataValues", "qualityMetrics")
        }
        assert tables["officialDataValues"]["RetentionProperties"] == {
            "MemoryStoreRetentionPeriodInHours": 168,
            "MagneticStoreRetentionPeriodInDays": 2555,
        }
        assert tables["qualityMetrics"]["RetentionProperties"] == {
            "MemoryStoreRetentionPeriodInHours": 24,
            "MagneticStoreRetentionPeriodInDays": 365,
        }
        magnetic = tables["officialDataValues"]["MagneticStoreWriteProperties"]
        assert magnetic["EnableMagneticStoreWrites"] is True
        location = magnetic["MagneticStoreRejectedDataLocation"]["S3Configuration"]
        assert (location["BucketName"], location["ObjectKeyPrefix"]) == (
            config.rejected_bucket,
            "rejected-writes/",
        )

        longer = TimestreamSettings(
            **{
                **{f: getattr(config, f) for f in config.__struct_fields__},
                "quality_metrics_magnetic_days": 730,
            }
        )
        states = dict(ensure_timeseries(longer))
        assert states[f"{config.database}.qualityMetrics"] == "updated"
        assert states[f"{config.database}.officialDataValues"] == "exists"
        retention = client.describe_table(DatabaseName=config.database, TableName="qualityMetrics")
        assert (
            retention["Table"]["RetentionProperties"]["MagneticStoreRetentionPeriodInDays"] == 730
        )
    finally:
        _drop(config)


def test_every_call_is_accepted_whole_in_calls_of_at_most_100(
    timeseries: TimestreamSettings,
) -> None:
    sink = timestream_sink(timeseries)
    assert sink is not None
    recorder = Recorder(sink.client)
    sink.client = recorder
    events = publications(230, series="TS.MOTO")
    suspect = official("TS.MOTO", version=2, status="suspect")
    events.append(alert(suspect, position=231))

    assert asyncio.run(sink.deliver(events)) == 0

    assert [(table, sent) for table, sent, _ in recorder.calls] == [
        ("officialDataValues", 100),
        ("officialDataValues", 100),
        ("officialDataValues", 30),
        ("qualityMetrics", 100),
        ("qualityMetrics", 100),
        ("qualityMetrics", 31),
    ]
    for _table, sent, ingested in recorder.calls:
        assert ingested["Total"] == sent
        assert ingested["MemoryStore"] + ingested["MagneticStore"] == sent

    # A redelivery (the relay lost its position) writes the same records again: accepted.
    recorder.calls.clear()
    assert asyncio.run(sink.deliver(events)) == 0
    assert sum(sent for _, sent, _ in recorder.calls) == 461


def test_rejected_records_are_reported_to_the_bucket_and_counted(
    timeseries: TimestreamSettings,
) -> None:
    sink = timestream_sink(timeseries)
    assert sink is not None
    events = publications(4, series="TS.REJECT", first_position=500)
    bad = official_value_record(events[2].event)  # type: ignore[arg-type]
    reason = "The record timestamp is outside the time range of the data ingestion window."
    recorder = Recorder(sink.client, reject={bad["Time"]: {"Reason": reason}})
    sink.client = recorder

    # Both records of event 502 (official value and quality) are rejected: one event.
    assert asyncio.run(sink.deliver(events)) == 1
    assert [(t, n) for t, n, _ in recorder.calls] == [
        ("officialDataValues", 3),
        ("qualityMetrics", 3),
    ]

    s3 = s3_client(timeseries)
    listed = s3.list_objects_v2(Bucket=timeseries.rejected_bucket, Prefix="rejected-records/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    assert [k.split("/")[1] for k in keys] == ["officialDataValues", "qualityMetrics"]
    assert all("/00000000000000000502-00000000000000000502-" in k for k in keys)
    report = json.loads(
        s3.get_object(Bucket=timeseries.rejected_bucket, Key=keys[0])["Body"].read()
    )
    assert report["database"] == timeseries.database
    assert report["table"] == "officialDataValues"
    [entry] = report["rejected"]
    assert (entry["event_id"], entry["position"], entry["reason"]) == (
        events[2].event_id,
        502,
        reason,
    )
    assert entry["record"] == bad

    # Delivered again and rejected again: the same objects, nothing new.
    assert asyncio.run(sink.deliver(events)) == 1
    again = s3.list_objects_v2(Bucket=timeseries.rejected_bucket, Prefix="rejected-records/")
    assert sorted(o["Key"] for o in again["Contents"]) == keys


def _setup_command(monkeypatch: pytest.MonkeyPatch, **variables: str) -> int:
    from app.entrypoints.cli import main

    for name, value in variables.items():
        monkeypatch.setenv(f"QIS_TIMESTREAM__{name}", value)
    return main(["timestream", "setup"])


def test_qis_timestream_setup_prints_what_it_did(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _settings(settings)
    variables = {
        "ENDPOINT_URL": config.endpoint_url,
        "ACCESS_KEY_ID": "testing",
        "SECRET_ACCESS_KEY": "testing",
        "DATABASE": config.database,
        "REJECTED_BUCKET": config.rejected_bucket,
    }
    try:
        assert _setup_command(monkeypatch, **variables) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"s3://{config.rejected_bucket}\tcreated",
            f"{config.database}\tcreated",
            f"{config.database}.officialDataValues\tcreated",
            f"{config.database}.qualityMetrics\tcreated",
        ]
        assert _setup_command(monkeypatch, **variables) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split("\t")[1] for line in lines] == ["exists"] * 4
    finally:
        _drop(config)


def test_qis_timestream_setup_on_an_unreachable_endpoint_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    variables = {
        "ENDPOINT_URL": "http://127.0.0.1:1",
        "ACCESS_KEY_ID": "testing",
        "SECRET_ACCESS_KEY": "testing",
    }
    assert _setup_command(monkeypatch, **variables) == 2
    err = capsys.readouterr().err
    assert err.startswith("qis: cannot set up Timestream at http://127.0.0.1:1 (")
    assert len(err.strip().splitlines()) == 1
