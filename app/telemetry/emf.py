"""CloudWatch Embedded Metric Format (EMF) documents from OpenTelemetry metrics data.

The encoding of the ADOT Python distro's `ConsoleEmfExporter` (aws-opentelemetry-distro
0.21.0), which this replaces, document for document
(tests/unit/telemetry/test_emf_format.py holds its output for a fixed set of points):

- every data point becomes a record; the records of one scope with the same attribute
  set and timestamp (in ms) make one document, in the order they were first met;
- a document is `{"_aws": {"Timestamp", "CloudWatchMetrics": [{"Namespace", "Metrics":
  [{"Name", "Unit"?}], "Dimensions": [[attribute names]]}]}, "Version": "1"}`, then each
  resource attribute as `otel.resource.<key>` (a string, not a dimension), each metric's
  value under its name, and each attribute as a string dimension;
- sums and gauges give their value; explicit-bucket histograms `Count`/`Sum`/`Min`/`Max`;
  exponential histograms also `Values` (each non-empty bucket's midpoint, positive
  buckets, then zero, then negative) and `Counts`, from which CloudWatch computes
  percentiles;
- units: CloudWatch's own pass through, `ms`/`s`/`us`/`By`/`bit` map to theirs, anything
  else (`1`, `ns`, ...) is left out (CloudWatch's "None").

Only what the platform needs: no Application Signals dimensions, no CloudWatch Logs
client (the documents go to stdout or a file, where the agent or Fluent Bit picks them up).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Gauge,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource

_log = logging.getLogger(__name__)

# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDatum.html
CLOUDWATCH_UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)
# OpenTelemetry (UCUM) units to CloudWatch's; "" means no unit.
_UNIT_MAPPING = {"1": "", "ns": "", "ms": "Milliseconds", "s": "Seconds", "us": "Microseconds"}
_UNIT_MAPPING |= {"By": "Bytes", "bit": "Bits"}

_encoder = msgspec.json.Encoder()


def cloudwatch_unit(unit: str) -> str | None:
    """The EMF `Unit` of an OpenTelemetry unit, None to leave it out."""
    if not unit:
        return None
    if unit in CLOUDWATCH_UNITS:
        return unit
    return _UNIT_MAPPING.get(unit) or None


def _exponential_values(point: Any) -> dict[str, Any]:
    """`Values`/`Counts` (bucket midpoints and their counts) plus the totals."""
    values: list[float] = []
    counts: list[float] = []
    base = math.pow(2, math.pow(2, float(-point.scale)))
    positive = point.positive
    if positive is not None and positive.bucket_counts:
        begin = end = 0.0
        for i, count in enumerate(positive.bucket_counts):
            index = i + positive.offset
            begin = math.pow(base, float(index)) if begin == 0 else end
            end = math.pow(base, float(index + 1))
            if count > 0:
                values.append((begin + end) / 2)
                counts.append(float(count))
    if point.zero_count > 0:
        values.append(0)
        counts.append(float(point.zero_count))
    negative = point.negative
    if negative is not None and negative.bucket_counts:
        begin = end = 0.0
        for i, count in enumerate(negative.bucket_counts):
            index = i + negative.offset
            end = -math.pow(base, float(index)) if end == 0 else begin
            begin = -math.pow(base, float(index + 1))
            if count > 0:
                values.append((begin + end) / 2)
                counts.append(float(count))
    return {
        "Values": values,
        "Counts": counts,
        "Count": point.count,
        "Sum": point.sum,
        "Max": point.max,
        "Min": point.min,
    }


def _value(data: Any, point: Any) -> Any:
    """A point's EMF value, by the kind of its metric's data."""
    if isinstance(data, Sum | Gauge):
        return point.value
    if isinstance(data, ExponentialHistogram):
        return _exponential_values(point)
    return {"Count": point.count, "Sum": point.sum, "Min": point.min, "Max": point.max}


class EmfExporter(MetricExporter):
    """OpenTelemetry metrics as EMF documents (delta temporality, exponential histograms),
    handed to `_export({"message": document, "timestamp": ms})`: a line appended to
    `path`, or written to stdout without one.

    `name_of` renames a metric (the SDK lower-cases instrument names; CloudWatch names
    are case-sensitive); `extra` adds metrics to each non-empty export (see
    `app.telemetry.metrics.with_distributions`).
    """

    def __init__(
        self,
        namespace: str,
        name_of: Callable[[str], str] = lambda name: name,
        extra: Callable[[MetricsData], MetricsData] | None = None,
        path: str | None = None,
    ) -> None:
        delta = AggregationTemporality.DELTA
        super().__init__(
            preferred_temporality={
                Counter: delta,
                Histogram: delta,
                ObservableCounter: delta,
                ObservableGauge: delta,
                ObservableUpDownCounter: delta,
                UpDownCounter: delta,
            },
            preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()},
        )
        self.namespace = namespace
        self._name_of = name_of
        self._extra = extra
        self._path = None if path is None else Path(path)
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            if self._extra is not None and metrics_data.resource_metrics:
                metrics_data = self._extra(metrics_data)
            for resource_metrics in metrics_data.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for timestamp, document in self._documents(
                        scope_metrics.metrics, resource_metrics.resource
                    ):
                        self._export(
                            {"message": _encoder.encode(document).decode(), "timestamp": timestamp}
                        )
        except Exception:  # never let metrics break the process that records them
            _log.exception("EMF export failed")
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def _documents(
        self, metrics: Sequence[Metric], resource: Resource | None
    ) -> list[tuple[int, dict[str, Any]]]:
        """(timestamp ms, document) per attribute set and timestamp of these metrics."""
        groups: dict[tuple[str, int], list[tuple[Metric, Any, int]]] = {}
        for metric in metrics:
            for point in metric.data.data_points:
                timestamp = (
                    point.time_unix_nano // 1_000_000
                    if point.time_unix_nano is not None
                    else int(time.time() * 1000)
                )
                attributes = point.attributes or {}
                key = (str(sorted(attributes.items())), timestamp)
                groups.setdefault(key, []).append((metric, point, timestamp))
        return [
            (timestamp, self._document(records, resource, timestamp))
            for (_, timestamp), records in groups.items()
        ]

    def _document(
        self, records: list[tuple[Metric, Any, int]], resource: Resource | None, timestamp: int
    ) -> dict[str, Any]:
        cloudwatch: list[dict[str, Any]] = []
        document: dict[str, Any] = {
            "_aws": {"Timestamp": timestamp, "CloudWatchMetrics": cloudwatch},
            "Version": "1",
        }
        if resource is not None:
            for key, value in resource.attributes.items():
                document[f"otel.resource.{key}"] = str(value)
        definitions: list[dict[str, str]] = []
        for metric, point, _ in records:
            name = self._name_of(metric.name)
            if not name:
                continue
            definition = {"Name": name}
            unit = cloudwatch_unit(metric.unit or "")
            if unit:
                definition["Unit"] = unit
            document[name] = _value(metric.data, point)
            definitions.append(definition)
        attributes: Mapping[str, Any] = records[0][1].attributes or {}
        for name, value in attributes.items():
            document[name] = str(value)
        if definitions:
            directive: dict[str, Any] = {"Namespace": self.namespace, "Metrics": definitions}
            if attributes:
                directive["Dimensions"] = [list(attributes)]
            cloudwatch.append(directive)
        return document

    def _export(self, log_event: dict[str, Any]) -> None:
        """Write one document (`log_event["message"]`) as a line."""
        line = log_event["message"] + "\n"
        with self._lock:
            if self._path is None:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                with self._path.open("a", encoding="utf-8") as out:
                    out.write(line)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None
