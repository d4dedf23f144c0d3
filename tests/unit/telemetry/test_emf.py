"""Metrics leave as valid CloudWatch EMF, with distributions CloudWatch can take percentiles of."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from app.settings import TelemetrySettings
from app.telemetry.catalogue import CATALOGUE, METRIC_NAMES, NAMESPACE
from app.telemetry.distributions import Distributions
from app.telemetry.metrics import QisMetrics, StdoutEmfExporter, build_meter_provider
from app.telemetry.setup import setup_telemetry

SCHEMA = json.loads((Path(__file__).parent / "emf_schema.json").read_text())


class Collecting(StdoutEmfExporter):
    def __init__(self, distributions: Distributions | None = None) -> None:
        super().__init__(distributions=distributions)
        self.lines: list[str] = []

    def _export(self, log_event: dict[str, Any]) -> None:
        self.lines.append(log_event["message"])


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    distributions = Distributions()
    exporter = Collecting(distributions)
    reader = InMemoryMetricReader(
        preferred_temporality=exporter._preferred_temporality,
        preferred_aggregation=exporter._preferred_aggregation,
    )
    provider = MeterProvider(metric_readers=[reader])
    metrics = QisMetrics(
        provider.get_meter("qis"),
        "api",
        quality_series=frozenset({"SPX"}),
        distributions=distributions,
        environment="staging",
    )
    for ms in [3.0, 5.0, 8.0, 13.0, 250.0]:
        metrics.ingestion_latency("POST /v1/observations", ms)
    metrics.observations_accepted(100)
    metrics.http_request("POST", "/v1/observations", 202, 4.0)
    metrics.http_request("GET", "/health/ready", 503, 1.0)
    metrics.reconciliation(True)
    metrics.reconciliation(False)
    metrics.quality_score(0.9, "SPX")
    metrics.quality_score(1.0, "UNBOUNDED-SERIES")
    metrics.dead_letters(2, "decode")
    metrics.dead_letters(1, "reconcile")
    metrics.cache_lookup("L1", True)
    metrics.cache_fallback()
    metrics.rate_limit_fallback()
    metrics.publication_freshness(0.4)
    metrics.consumer_lag("qis.observations.v1", 7)
    metrics.lake_hour_archived("archived", rows=120, size=4096, seconds=0.5)
    metrics.lake_hour_archived("unchanged", rows=120, size=0, seconds=0.1)
    metrics.lake_archive_failure()
    metrics.sink_delivered("eventbridge", events=10, refused=2, seconds=0.05)
    metrics.sink_delivered("timestream", events=4, refused=0, seconds=0.02)
    metrics.sink_failed("timestream")
    metrics.document_command("find", 2.5, failed=False)
    metrics.document_command("update", 40.0, failed=True)
    data = reader.get_metrics_data()
    assert data is not None
    exporter.export(data)
    provider.shutdown()
    return [json.loads(line) for line in exporter.lines]


def by_metric(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in documents:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                found.setdefault(metric["Name"], []).append(doc)
    return found


def unit_of(doc: dict[str, Any], name: str) -> str | None:
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for metric in directive["Metrics"]:
            if metric["Name"] == name:
                return metric.get("Unit")
    raise KeyError(name)


def test_every_document_validates_against_the_emf_schema(documents: list[dict[str, Any]]) -> None:
    assert documents
    for doc in documents:
        jsonschema.validate(doc, SCHEMA)


def test_every_named_metric_and_dimension_has_a_root_member(
    documents: list[dict[str, Any]],
) -> None:
    # The EMF rules the schema cannot express: targets must exist and have the right shape.
    for doc in documents:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            for dimension_set in directive["Dimensions"]:
                for name in dimension_set:
                    assert isinstance(doc[name], str)
            for metric in directive["Metrics"]:
                value = doc[metric["Name"]]
                assert isinstance(value, int | float | dict | list)


def test_latency_is_a_distribution_with_values_and_counts(
    documents: list[dict[str, Any]],
) -> None:
    (latency,) = by_metric(documents)["IngestionLatency"]
    distribution = latency["IngestionLatency"]
    assert distribution["Count"] == 5
    assert sum(distribution["Counts"]) == 5
    assert len(distribution["Values"]) == len(distribution["Counts"]) == 5
    assert distribution["Max"] == 250.0
    assert distribution["Min"] == 3.0
    assert latency["Route"] == "POST /v1/observations"
    assert unit_of(latency, "IngestionLatency") == "Milliseconds"
    assert latency["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["Environment", "Service", "Route"]
    ]


def test_names_keep_their_cloudwatch_case_and_units(documents: list[dict[str, Any]]) -> None:
    found = by_metric(documents)
    assert {
        "IngestionLatency",
        "DataIngestionRate",
        "HttpRequests",
        "HttpLatency",
        "ReconciliationSuccessRate",
        "QualityScoreAverage",
        "QualityScoreBySeries",
        "DeadLetterCount",
        "CacheHitRatio",
        "CacheFallbackCount",
        "PublicationFreshness",
        "ConsumerLag",
    } <= set(found)
    assert found["DataIngestionRate"][0]["DataIngestionRate"] == 100
    assert found["ConsumerLag"][0]["ConsumerLag"] == 7
    assert unit_of(found["PublicationFreshness"][0], "PublicationFreshness") == "Seconds"
    assert unit_of(found["DeadLetterCount"][0], "DeadLetterCount") == "Count"
    by_stage = {d["Stage"]: d["DeadLetterCount"] for d in found["DeadLetterCount"]}
    assert by_stage == {"decode": 2, "reconcile": 1}
    assert found["ReconciliationSuccessRate"][0]["ReconciliationSuccessRate"] == 50.0
    hours = {d["State"]: d["LakeHoursArchived"] for d in found["LakeHoursArchived"]}
    assert hours == {"archived": 1, "unchanged": 1}
    assert found["LakeRowsArchived"][0]["LakeRowsArchived"] == 120  # unchanged: not counted
    assert found["LakeBytesArchived"][0]["LakeBytesArchived"] == 4096
    assert found["LakeArchiveFailures"][0]["LakeArchiveFailures"] == 1
    delivered = {d["Sink"]: d["SinkEventsDelivered"] for d in found["SinkEventsDelivered"]}
    assert delivered == {"eventbridge": 8, "timestream": 4}
    assert [(d["Sink"], d["SinkEventsRefused"]) for d in found["SinkEventsRefused"]] == [
        ("eventbridge", 2)
    ]
    assert [(d["Sink"], d["SinkFailures"]) for d in found["SinkFailures"]] == [("timestream", 1)]
    latency = {d["Sink"]: d["SinkDeliveryLatency"]["Max"] for d in found["SinkDeliveryLatency"]}
    assert latency == {"eventbridge": 50.0, "timestream": 20.0}
    commands = {
        d["Operation"]: d["DocumentStoreLatency"]["Max"] for d in found["DocumentStoreLatency"]
    }
    assert commands == {"find": 2.5, "update": 40.0}
    failures = [
        (d["Operation"], d["DocumentStoreFailures"]) for d in found["DocumentStoreFailures"]
    ]
    assert failures == [("update", 1)]


def test_the_code_records_exactly_the_catalogues_metrics(documents: list[dict[str, Any]]) -> None:
    """The names, units and dimension sets the code emits are the catalogue's, which the
    dashboards and alarms read (tests/unit/ops/test_definitions.py ties them there)."""
    found = by_metric(documents)
    assert set(found) == set(METRIC_NAMES)
    for spec in CATALOGUE:
        for doc in found[spec.name]:
            # No Unit in EMF is CloudWatch's unit "None".
            assert (unit_of(doc, spec.name) or "None") == spec.unit, spec.name
            (directive,) = [
                d
                for d in doc["_aws"]["CloudWatchMetrics"]
                if spec.name in {m["Name"] for m in d["Metrics"]}
            ]
            assert [sorted(s) for s in directive["Dimensions"]] == [sorted(spec.dimensions)]


def test_every_series_carries_the_environment(documents: list[dict[str, Any]]) -> None:
    # The dashboards and alarms of one environment filter on it (staging and prod can
    # share an account): a series without it would be on no dashboard.
    assert all(spec.dimensions[:2] == ("Environment", "Service") for spec in CATALOGUE)
    for doc in documents:
        assert doc["Environment"] == "staging"
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert all("Environment" in names for names in directive["Dimensions"])


def test_the_configured_environment_reaches_the_recorded_attributes() -> None:
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(
        TelemetrySettings(environment="prod", traces_exporter="none"),
        "worker",
        metric_readers=[reader],
    )
    try:
        telemetry.metrics.dead_letters(1, "decode")
        data = reader.get_metrics_data()
        assert data is not None
        points = [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name.lower() == "deadlettercount"
            for point in metric.data.data_points
        ]
        assert [dict(p.attributes or {}) for p in points] == [
            {"Environment": "prod", "Service": "worker", "Stage": "decode"}
        ]
    finally:
        telemetry.shutdown()


def test_each_process_exports_under_an_identity_of_its_own() -> None:
    # Several api processes of one pod export side by side: their documents (and spans)
    # say which process they come from; the dimensions stay the same.
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(TelemetrySettings(), "api", metric_readers=[reader])
    try:
        telemetry.metrics.dead_letters(1, "decode")
        data = reader.get_metrics_data()
        assert data is not None
        attributes = data.resource_metrics[0].resource.attributes
        assert attributes["service.instance.id"] == f"{socket.gethostname()}:{os.getpid()}"
        assert attributes["process.pid"] == os.getpid()
        assert attributes["service.name"] == "qis-api"
    finally:
        telemetry.shutdown()


def test_status_classes_and_bounded_series(documents: list[dict[str, Any]]) -> None:
    requests = {d["StatusClass"]: d["HttpRequests"] for d in by_metric(documents)["HttpRequests"]}
    assert requests == {"2xx": 1, "5xx": 1}
    by_series = by_metric(documents)["QualityScoreBySeries"]
    assert [d["Series"] for d in by_series] == ["SPX"]


def test_cache_hit_ratio_is_the_hit_share_of_each_interval_per_level() -> None:
    exporter = Collecting()
    reader = InMemoryMetricReader(
        preferred_temporality=exporter._preferred_temporality,
        preferred_aggregation=exporter._preferred_aggregation,
    )
    provider = MeterProvider(metric_readers=[reader])
    metrics = QisMetrics(provider.get_meter("qis"), "api")

    def interval() -> dict[str, float]:
        exporter.lines.clear()
        data = reader.get_metrics_data()
        if data is not None:
            exporter.export(data)
        found = by_metric([json.loads(line) for line in exporter.lines])
        return {doc["Level"]: doc["CacheHitRatio"] for doc in found.get("CacheHitRatio", [])}

    for hit in (True, True, True, False):
        metrics.cache_lookup("L1", hit)
    metrics.cache_lookup("L2", False)
    assert interval() == {"L1": 0.75, "L2": 0.0}
    metrics.cache_lookup("L2", True)
    assert interval() == {"L2": 1.0}  # L1 had no lookups: nothing, not a stale ratio
    assert interval() == {}
    provider.shutdown()


def test_the_configured_file_exporter_writes_the_request_distributions(tmp_path: Path) -> None:
    # The production wiring: build_meter_provider hands the distributions to the exporter.
    settings = TelemetrySettings(metrics_exporter="file", metrics_file=str(tmp_path / "m.jsonl"))
    distributions = Distributions()
    provider = build_meter_provider(settings, Resource.create({}), None, distributions)
    metrics = QisMetrics(provider.get_meter("qis"), "api", distributions=distributions)
    for ms in (2.0, 4.0, 4.0, 400.0):
        metrics.http_request("GET", "/health/live", 200, ms)
    metrics.ingestion_latency("POST /v1/observations", 12.5)
    provider.shutdown()  # collects and exports once more
    documents = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    found = by_metric(documents)
    (latency,) = found["HttpLatency"]
    assert latency["Route"] == "GET /health/live"
    distribution = latency["HttpLatency"]
    assert (distribution["Count"], distribution["Min"], distribution["Max"]) == (4, 2.0, 400.0)
    assert sorted(distribution["Counts"]) == [1.0, 1.0, 2.0]
    (ingestion,) = found["IngestionLatency"]
    assert ingestion["IngestionLatency"]["Count"] == 1
    assert [d["HttpRequests"] for d in found["HttpRequests"]] == [4]
    for doc in documents:
        jsonschema.validate(doc, SCHEMA)
