"""Distributions count values into the same buckets as the SDK's exponential histogram."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from app.telemetry.distributions import MAX_BUCKETS, RECORD_SCALE, Distribution, Distributions

ATTRIBUTES = {"Service": "api", "Route": "GET /x"}


def sdk_point(values: list[float]) -> ExponentialHistogramDataPoint:
    """The SDK's own data point for `values`, limited as ours are."""
    reader = InMemoryMetricReader()
    aggregation = ExponentialBucketHistogramAggregation(
        max_size=MAX_BUCKETS, max_scale=RECORD_SCALE
    )
    provider = MeterProvider(
        metric_readers=[reader], views=[View(instrument_name="*", aggregation=aggregation)]
    )
    histogram = provider.get_meter("t").create_histogram("HttpLatency", unit="ms")
    for value in values:
        histogram.record(value, ATTRIBUTES)
    data = reader.get_metrics_data()
    assert data is not None
    (point,) = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    provider.shutdown()
    assert isinstance(point, ExponentialHistogramDataPoint)
    return point


def trimmed(counts: Sequence[int]) -> list[int]:
    """The SDK's counts without the empty buckets it keeps past the highest one."""
    counts = list(counts)
    while counts and counts[-1] == 0:
        counts.pop()
    return counts


def our_point(values: list[float], batched: bool = False) -> ExponentialHistogramDataPoint:
    """Our data point for `values`, recorded one by one or (`batched`) through
    `record_values` in uneven batches, as the request metrics' fold hands them over."""
    distribution = Distribution("HttpLatency", "ms", attributes=lambda _: ATTRIBUTES)
    if batched:
        start = 0
        for size in (1, 7, 1024, 3, 1000):
            distribution.record_values("GET /x", values[start : start + size])
            start += size
        distribution.record_values("GET /x", values[start:])
        distribution.record_values("GET /x", [])
    else:
        for value in values:
            distribution.record("GET /x", value)
    metric = distribution.collect()
    assert metric is not None
    assert metric.data.aggregation_temporality is AggregationTemporality.DELTA  # type: ignore[union-attr]
    (point,) = metric.data.data_points
    assert isinstance(point, ExponentialHistogramDataPoint)
    return point


@pytest.mark.parametrize("batched", [False, True], ids=["record", "record_values"])
@pytest.mark.parametrize(
    ("mu", "sigma"),
    [(0.0, 0.05), (0.0, 1.0), (3.0, 2.0), (-2.0, 4.0)],
    ids=["narrow", "latency-like", "wide", "very-wide"],
)
def test_same_buckets_scale_and_totals_as_the_sdk(mu: float, sigma: float, batched: bool) -> None:
    rng = random.Random(f"{mu}/{sigma}")
    values = [rng.lognormvariate(mu, sigma) for _ in range(5000)]
    ours, sdk = our_point(values, batched), sdk_point(values)
    assert (ours.scale, ours.positive.offset) == (sdk.scale, sdk.positive.offset)
    assert list(ours.positive.bucket_counts) == trimmed(sdk.positive.bucket_counts)
    assert (ours.count, ours.min, ours.max, ours.zero_count) == (5000, min(values), max(values), 0)
    assert ours.sum == pytest.approx(sdk.sum)
    assert len(ours.positive.bucket_counts) <= MAX_BUCKETS
    assert dict(ours.attributes or {}) == ATTRIBUTES


def test_a_wide_range_is_merged_down_to_the_emf_limit() -> None:
    values = [10.0**k for k in range(-3, 7)]  # 1 µs .. 1,000 s, in ms
    point = our_point(values)
    assert len(point.positive.bucket_counts) <= MAX_BUCKETS
    assert sum(point.positive.bucket_counts) == len(values)
    assert point.scale < RECORD_SCALE


@pytest.mark.parametrize("batched", [False, True], ids=["record", "record_values"])
def test_zero_goes_to_the_zero_bucket(batched: bool) -> None:
    point = our_point([0.0, 0.0, 2.5], batched)
    assert (point.zero_count, sum(point.positive.bucket_counts), point.count) == (2, 1, 3)
    assert (point.min, point.max, point.sum) == (0.0, 2.5, 2.5)


def test_collection_drains_per_attribute_set_and_starts_a_new_interval() -> None:
    registry = Distributions()

    def by_route(route: str) -> dict[str, str]:
        return {"Route": route}

    latency = registry.histogram("HttpLatency", "ms", attributes=by_route)
    ingestion = registry.histogram(
        "IngestionLatency", "ms", "request received to broker ack", attributes=by_route
    )
    for value in (1.0, 2.0, 3.0):
        latency.record("GET /a", value)
    latency.record("GET /b", 9.0)
    first = {m.name: m for m in registry.collect()}
    assert set(first) == {"HttpLatency"}  # nothing recorded for IngestionLatency
    counts = {
        dict(p.attributes or {})["Route"]: p.count  # type: ignore[union-attr]
        for p in first["HttpLatency"].data.data_points
    }
    assert counts == {"GET /a": 3, "GET /b": 1}
    assert registry.collect() == []
    ingestion.record("POST /v1/observations", 4.0)
    (second,) = registry.collect()
    (point,) = second.data.data_points
    (earlier,) = [p for p in first["HttpLatency"].data.data_points if p.count == 1]  # type: ignore[union-attr]
    assert second.name == "IngestionLatency"
    assert second.description == "request received to broker ack"
    assert point.start_time_unix_nano >= earlier.time_unix_nano
