"""Per-request metrics are buffered and folded: counts stay exact, memory stays bounded."""

from __future__ import annotations

import threading

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from app.telemetry.distributions import Distributions
from app.telemetry.metrics import FOLD_AT, QisMetrics

METHOD, TEMPLATE = "GET", "/v1/reference-data/{reference_data_id}/official-values/{snap}"
ROUTE = f"{METHOD} {TEMPLATE}"


def _counts(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[tuple[str, str], int] = {}
    for scope in data.resource_metrics[0].scope_metrics:
        for metric in scope.metrics:
            if metric.name == "httprequests":
                for point in metric.data.data_points:
                    attributes = point.attributes or {}
                    key = (str(attributes["Route"]), str(attributes["StatusClass"]))
                    found[key] = point.value  # type: ignore[union-attr]
    return found


def test_requests_are_counted_exactly_across_folds_and_collections() -> None:
    distributions = Distributions()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = QisMetrics(provider.get_meter("qis"), "api", distributions=distributions)
    total = 3 * FOLD_AT + 7
    for i in range(total):
        metrics.http_request(METHOD, TEMPLATE, 404 if i % 10 == 0 else 200, 1.0 + i % 5)
    # Folded every FOLD_AT requests without any reader: the buffer stays bounded.
    assert len(metrics._requests) == total % FOLD_AT
    (latency,) = distributions.collect()  # folds what is still buffered first
    (point,) = latency.data.data_points
    assert point.count == total  # type: ignore[union-attr]
    assert (point.min, point.max) == (1.0, 5.0)  # type: ignore[union-attr]
    assert point.sum == sum(1.0 + i % 5 for i in range(total))  # type: ignore[union-attr]
    fours = len(range(0, total, 10))
    assert _counts(reader) == {(ROUTE, "2xx"): total - fours, (ROUTE, "4xx"): fours}
    provider.shutdown()


def test_a_fold_on_another_thread_loses_no_request() -> None:
    distributions = Distributions()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = QisMetrics(provider.get_meter("qis"), "api", distributions=distributions)
    per_thread, threads = 20_000, 3
    stop = threading.Event()

    def record() -> None:
        for _ in range(per_thread):
            metrics.http_request(METHOD, TEMPLATE, 200, 2.0)

    def collect() -> None:  # what the periodic reader's thread does meanwhile
        while not stop.is_set():
            metrics.flush()

    collector = threading.Thread(target=collect)
    collector.start()
    recorders = [threading.Thread(target=record) for _ in range(threads)]
    for thread in recorders:
        thread.start()
    for thread in recorders:
        thread.join()
    stop.set()
    collector.join()
    (latency,) = distributions.collect()
    assert sum(p.count for p in latency.data.data_points) == per_thread * threads  # type: ignore[union-attr]
    assert _counts(reader) == {(ROUTE, "2xx"): per_thread * threads}
    provider.shutdown()
