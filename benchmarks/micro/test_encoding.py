"""Micro-benchmarks of the encoders on the hot paths: cache entries, responses, EMF metrics.

Run: `.venv/bin/pytest benchmarks/micro/test_encoding.py --benchmark-only --benchmark-enable`

- cache-encoding: what the query service does on a miss before storing in L1/L2: build the
  key in the seed's pattern and encode the official value (or a history page) as JSON.
- response-encoding: the 202 body of a 100-observation request, and a version list.
- emf-encoding: one export interval of the API's metrics turned into CloudWatch EMF.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

from app.api.wire import ObservationsAccepted
from app.domain.quality import Quality
from app.domain.reading import HistoryItem, HistoryPage, VersionList
from app.domain.reconciliation import Exclusion
from app.domain.versions import OfficialValue
from app.services.cache import latest_key, rfc3339
from app.telemetry.distributions import Distributions
from app.telemetry.metrics import QisMetrics, StdoutEmfExporter, with_distributions

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
_json = msgspec.json.Encoder()


def official(snap: datetime = SNAP, version: int = 2) -> OfficialValue:
    """A typical version: 4 sources used, 1 excluded as an outlier, a revision of version 1."""
    return OfficialValue(
        reference_data_id="ETH-USD",
        snap=snap,
        version=version,
        value=3301.13,
        status="suspect",
        method="median",
        sources_used=("binance", "bitstamp", "coinbase", "kraken"),
        sources_excluded=(Exclusion(source="okx", reason="outlier"),),
        quality=Quality(
            score=0.6, completeness=1.0, timeliness=0.75, consistency=0.8, validity=1.0
        ),
        supersedes=version - 1 or None,
        recorded_at=snap + timedelta(seconds=3, microseconds=412_000),
    )


def cache_entry(series: str, snap: datetime, value: OfficialValue) -> tuple[str, bytes]:
    """Key and value as the query service stores a latest official value."""
    return latest_key(series, rfc3339(snap)), _json.encode(value)


@pytest.mark.benchmark(group="cache-encoding")
def test_encode_a_latest_official_value_entry(benchmark: Any) -> None:
    value = official()

    key, encoded = benchmark(cache_entry, "ETH-USD", SNAP, value)

    assert key == "official:{ETH-USD}:2026-01-15T14:00:00Z:latest"
    assert msgspec.json.decode(encoded)["version"] == 2


@pytest.mark.benchmark(group="cache-encoding")
def test_encode_a_history_page_of_100(benchmark: Any) -> None:
    items = [
        HistoryItem(
            **msgspec.structs.asdict(official(SNAP + timedelta(minutes=i))),
            bucket=SNAP + timedelta(minutes=i),
            count=1,
        )
        for i in range(100)
    ]
    page = HistoryPage(items=items, next_cursor="eyJzdGFydCI6IjIwMjYtMDEtMTVUMTU6NDA6MDBaIn0")

    encoded = benchmark(_json.encode, page)

    assert len(msgspec.json.decode(encoded)["items"]) == 100


@pytest.mark.benchmark(group="response-encoding")
def test_encode_the_202_body_of_100_observations(benchmark: Any) -> None:
    accepted = ObservationsAccepted(
        accepted=100, duplicates=0, observation_ids=[f"h:{i:032x}" for i in range(100)]
    )

    encoded = benchmark(_json.encode, accepted)

    assert encoded.startswith(b'{"accepted":100,"duplicates":0,')


@pytest.mark.benchmark(group="response-encoding")
def test_encode_a_version_list(benchmark: Any) -> None:
    versions = VersionList(items=[official(version=1), official(version=2)])

    encoded = benchmark(_json.encode, versions)

    assert [v["version"] for v in msgspec.json.decode(encoded)["items"]] == [1, 2]


class _CountingEmf(StdoutEmfExporter):
    """The production EMF exporter, counting documents instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.documents = 0

    def _export(self, log_event: dict[str, Any]) -> None:
        self.documents += 1


def one_interval_of_api_metrics(exporter: StdoutEmfExporter) -> MetricsData:
    """What an API process records in one interval: 5 routes, 1,000 requests, cache lookups."""
    reader = InMemoryMetricReader(
        preferred_temporality=exporter._preferred_temporality,
        preferred_aggregation=exporter._preferred_aggregation,
    )
    provider = MeterProvider(metric_readers=[reader])
    distributions = Distributions()
    metrics = QisMetrics(provider.get_meter("qis"), "api", distributions=distributions)
    routes = [
        "POST /v1/observations",
        "GET /v1/reference-data/{reference_data_id}/official-values/{snap}",
        "GET /v1/reference-data/{reference_data_id}/official-values",
        "GET /v1/reference-data/{reference_data_id}/quality",
        "GET /health/ready",
    ]
    for i in range(1000):
        route = routes[i % len(routes)]
        milliseconds = 1.0 + (i * 7919 % 250) / 10
        method, template = route.split(" ", 1)
        metrics.http_request(method, template, 200, milliseconds)
        if i % len(routes) == 0:
            metrics.ingestion_latency(route, milliseconds)
            metrics.observations_accepted(100)
        else:
            metrics.cache_lookup("L1", i % 3 != 0)
    data = reader.get_metrics_data()
    assert data is not None
    provider.shutdown()
    return with_distributions(data, distributions.collect())


@pytest.mark.benchmark(group="emf-encoding")
def test_encode_one_interval_of_api_metrics_as_emf(benchmark: Any) -> None:
    exporter = _CountingEmf()
    data = one_interval_of_api_metrics(exporter)

    benchmark(exporter.export, data)

    assert exporter.documents > 0


@pytest.mark.benchmark(group="http-metrics-record")
def test_record_one_requests_http_metrics(benchmark: Any) -> None:
    """What every HTTP request pays for HttpRequests and HttpLatency (the SDK's histogram
    record alone was ~4.3 µs; see app/telemetry/distributions.py)."""
    distributions = Distributions()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = QisMetrics(provider.get_meter("qis"), "api", distributions=distributions)
    route = "GET /v1/reference-data/{reference_data_id}/official-values/{snap}"

    benchmark(metrics.http_request, *route.split(" ", 1), 200, 1.25)

    (latency,) = distributions.collect()
    (point,) = latency.data.data_points
    metrics.flush()
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    (requests,) = data.resource_metrics[0].scope_metrics[0].metrics
    (counted,) = requests.data.data_points
    assert point.count == counted.value > 0  # type: ignore[union-attr]
    assert point.min == point.max == 1.25  # type: ignore[union-attr]
