"""Per-request latency distributions, counted without the SDK's per-measurement pipeline.

One `Histogram.record` of the OpenTelemetry SDK does much more per value (attribute key,
measurement object, storage lookup, aggregation lock, exponential bucket mapping), a
sizeable part of a cached read's whole handling time, and the metrics API has no weighted
record that would let a caller batch it. A `Distribution` counts each value into a
base-2 exponential bucket under one lock (both measured: micro benchmark group
`http-metrics-record`, benchmarks/results/telemetry-cost.md), and at collection turns each
attribute set's counts into one delta `ExponentialHistogramDataPoint`: the OpenTelemetry
data model that the EMF exporter (`app.telemetry.emf`) encodes as a CloudWatch `Values`/`Counts`
distribution, next to the SDK's own metrics (see `app.telemetry.metrics`).

Buckets follow the OpenTelemetry exponential histogram: at scale s, bucket i holds
(2^(i/2^s), 2^((i+1)/2^s)]. Values are counted at `RECORD_SCALE` (8: ~0.27 % wide
buckets); a data point merges neighbouring buckets (one scale down halves the count,
as the SDK's aggregation does) until its buckets span at most `MAX_BUCKETS`, which is
CloudWatch's limit on the values of one EMF distribution. Values are durations: zero
(and anything below it) goes to the zero bucket. Memory is bounded by the number of
attribute sets times the buckets their values fall in, whether or not anything collects.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Metric,
)

RECORD_SCALE = 8
MAX_BUCKETS = 100  # values per EMF distribution that CloudWatch accepts


class _Counts:
    __slots__ = ("buckets", "count", "high", "low", "total", "zero")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zero = 0
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf


class Distribution:
    """One histogram instrument (name, unit), delta per collection, per key: a key's
    attribute set is `attributes(key)`, built when the key is collected."""

    def __init__(
        self,
        name: str,
        unit: str,
        description: str = "",
        attributes: Callable[[str], Mapping[str, str]] = lambda _: {},
    ) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self._attributes = attributes
        self._factor = 2**RECORD_SCALE / math.log(2)
        self._lock = threading.Lock()
        self._counts: dict[str, _Counts] = {}
        self._since = time.time_ns()

    def record(self, key: str, value: float) -> None:
        """Count `value` for `key` (one value; a batch of one key's values:
        `record_values`, the same buckets)."""
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = _Counts()
            counts.count += 1
            counts.total += value
            if value < counts.low:
                counts.low = value
            if value > counts.high:
                counts.high = value
            if value > 0.0:
                index = math.ceil(math.log(value) * self._factor) - 1
                buckets = counts.buckets
                buckets[index] = buckets.get(index, 0) + 1
            else:
                counts.zero += 1

    def record_values(self, key: str, values: list[float]) -> None:
        """Count each of `values` for `key`, as `record` does one by one, with the
        per-value work in C (map and Counter): the request metrics' fold hands each
        route's latencies over this way. (For a single value `record` is cheaper: a
        Counter costs some µs to make.)"""
        if not values:
            return
        low, high = min(values), max(values)
        positive = values if low > 0.0 else [v for v in values if v > 0.0]
        # ceil(log(v) * factor) - 1 per value, counted per distinct bucket.
        ceilings = Counter(map(math.ceil, map(self._factor.__mul__, map(math.log, positive))))
        total = sum(values)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = _Counts()
            counts.count += len(values)
            counts.total += total
            counts.zero += len(values) - len(positive)
            if low < counts.low:
                counts.low = low
            if high > counts.high:
                counts.high = high
            buckets = counts.buckets
            for ceiling, count in ceilings.items():
                buckets[ceiling - 1] = buckets.get(ceiling - 1, 0) + count

    def collect(self) -> Metric | None:
        """The counts since the previous collection as one metric (None when there were
        no values), and a new interval."""
        with self._lock:
            pending, self._counts = self._counts, {}
            since, self._since = self._since, time.time_ns()
        if not pending:
            return None
        now = time.time_ns()
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=ExponentialHistogram(
                data_points=[
                    _point(counts, self._attributes(key), since, now)
                    for key, counts in pending.items()
                ],
                aggregation_temporality=AggregationTemporality.DELTA,
            ),
        )


def _point(
    counts: _Counts, attributes: Mapping[str, str], since: int, now: int
) -> ExponentialHistogramDataPoint:
    scale, offset, dense = _dense_buckets(counts.buckets)
    return ExponentialHistogramDataPoint(
        attributes=dict(attributes),
        start_time_unix_nano=since,
        time_unix_nano=now,
        count=counts.count,
        sum=counts.total,
        scale=scale,
        zero_count=counts.zero,
        positive=Buckets(offset=offset, bucket_counts=dense),
        negative=Buckets(offset=0, bucket_counts=[]),
        flags=0,
        min=counts.low,
        max=counts.high,
    )


def _dense_buckets(buckets: Mapping[int, int]) -> tuple[int, int, list[int]]:
    """(scale, offset, counts) with at most MAX_BUCKETS consecutive buckets."""
    if not buckets:
        return RECORD_SCALE, 0, []
    scale, low, high = RECORD_SCALE, min(buckets), max(buckets)
    while high - low >= MAX_BUCKETS:
        scale, low, high = scale - 1, low >> 1, high >> 1
    shift = RECORD_SCALE - scale
    dense = [0] * (high - low + 1)
    for index, count in buckets.items():
        dense[(index >> shift) - low] += count
    return scale, low, dense


class Distributions:
    """The distributions one exporter adds to each export (see `app.telemetry.metrics`)."""

    def __init__(self) -> None:
        self._all: list[Distribution] = []
        self._before_collect: list[Callable[[], None]] = []

    def before_collect(self, hook: Callable[[], None]) -> None:
        """Call `hook` at the start of every `collect` (a recorder that buffers values
        hands them over there)."""
        self._before_collect.append(hook)

    def histogram(
        self,
        name: str,
        unit: str,
        description: str = "",
        attributes: Callable[[str], Mapping[str, str]] = lambda _: {},
    ) -> Distribution:
        distribution = Distribution(name, unit, description, attributes)
        self._all.append(distribution)
        return distribution

    def collect(self) -> list[Metric]:
        """Each distribution's counts since the previous collection (those with values)."""
        for hook in self._before_collect:
            hook()
        return [metric for d in self._all if (metric := d.collect()) is not None]
