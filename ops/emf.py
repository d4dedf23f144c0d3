"""Read CloudWatch Embedded Metric Format records into per-metric samples, as CloudWatch would.

One EMF line can carry several metrics and several dimension sets; every (metric,
dimension set) pair becomes one series. A value is a number, a list of numbers, or a
distribution `{"Values", "Counts", "Count", "Sum", "Min", "Max"}` (what `app.telemetry.emf`
writes for histograms: bucket midpoints and their counts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from ops.alarm import Metric

_decode_line = msgspec.json.Decoder().decode


class EmfError(ValueError):
    """A line is not valid JSON or not a well-formed EMF record."""


class SeriesKey(msgspec.Struct, frozen=True, order=True):
    """A metric identity: namespace, name and the sorted (name, value) dimension pairs."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, metric: Metric) -> SeriesKey:
        """The key of a metric reference from a definition."""
        pairs = tuple(sorted((d.name, d.value) for d in metric.dimensions))
        return cls(metric.namespace, metric.metric_name, pairs)

    def describe(self) -> str:
        """`Name{Dim=value,...}` for messages."""
        dims = ",".join(f"{k}={v}" for k, v in self.dimensions)
        return f"{self.name}{{{dims}}}"


class Sample(msgspec.Struct, frozen=True):
    """What one record says about one series: a distribution and its summary statistics."""

    timestamp_ms: int
    values: tuple[float, ...]
    counts: tuple[float, ...]
    sample_count: float
    total: float
    minimum: float
    maximum: float

    @classmethod
    def of_values(cls, timestamp_ms: int, values: Sequence[float]) -> Sample:
        """Plain numbers, each one sample (a counter delta, a gauge reading)."""
        return cls(
            timestamp_ms,
            tuple(values),
            tuple(1.0 for _ in values),
            float(len(values)),
            float(sum(values)),
            float(min(values)),
            float(max(values)),
        )


class RecordedMetrics(msgspec.Struct, frozen=True):
    """Every series found in EMF input, its samples in file order, and its unit."""

    series: Mapping[SeriesKey, tuple[Sample, ...]]
    units: Mapping[SeriesKey, str]
    records: int
    skipped_lines: int

    def time_range_ms(self) -> tuple[int, int] | None:
        """First and last sample timestamps, or None when there is no sample."""
        stamps = [s.timestamp_ms for samples in self.series.values() for s in samples]
        return (min(stamps), max(stamps)) if stamps else None

    def samples(self, metric: Metric) -> tuple[Sample, ...]:
        """The samples of exactly this metric and dimension set (CloudWatch matches exactly)."""
        return self.series.get(SeriesKey.of(metric), ())


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EmfError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _sample(value: Any, timestamp_ms: int, where: str) -> Sample | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Sample.of_values(timestamp_ms, [float(value)])
    if isinstance(value, list):
        numbers = [_number(v, where) for v in value]
        return Sample.of_values(timestamp_ms, numbers) if numbers else None
    if isinstance(value, dict):
        values = [_number(v, where) for v in value.get("Values", [])]
        counts = [_number(c, where) for c in value.get("Counts", [1.0] * len(values))]
        if len(values) != len(counts):
            raise EmfError(f"{where}: Values and Counts differ in length")
        count = _number(value.get("Count", sum(counts)), where)
        if count <= 0:
            return None
        return Sample(
            timestamp_ms,
            tuple(values),
            tuple(counts),
            count,
            _number(value["Sum"], where),
            _number(value["Min"], where),
            _number(value["Max"], where),
        )
    raise EmfError(f"{where}: unsupported metric value {value!r}")


def _record_samples(record: dict[str, Any], where: str) -> Iterable[tuple[SeriesKey, str, Sample]]:
    meta = record["_aws"]
    if not isinstance(meta, dict) or not isinstance(meta.get("Timestamp"), int):
        raise EmfError(f"{where}: _aws.Timestamp must be epoch milliseconds")
    timestamp_ms: int = meta["Timestamp"]
    for directive in meta.get("CloudWatchMetrics", []):
        namespace = directive["Namespace"]
        dimension_sets: list[list[str]] = directive.get("Dimensions") or [[]]
        for definition in directive["Metrics"]:
            name = definition["Name"]
            if name not in record:
                raise EmfError(f"{where}: metric {name} has no value")
            sample = _sample(record[name], timestamp_ms, f"{where} {name}")
            if sample is None:
                continue
            for names in dimension_sets:
                try:
                    pairs = tuple(sorted((d, str(record[d])) for d in names))
                except KeyError as exc:
                    raise EmfError(f"{where}: dimension {exc} has no value") from exc
                key = SeriesKey(namespace, name, pairs)
                yield key, definition.get("Unit", "None"), sample


def parse_emf(lines: Iterable[str], source: str = "line") -> RecordedMetrics:
    """Parse EMF lines; blank lines and JSON lines without `_aws` (plain logs) are skipped."""
    return _parse_into(lines, source, defaultdict(list), {})


def _parse_into(
    lines: Iterable[str],
    source: str,
    series: defaultdict[SeriesKey, list[Sample]],
    units: dict[SeriesKey, str],
    records: int = 0,
    skipped: int = 0,
) -> RecordedMetrics:
    for number, line in enumerate(lines, start=1):
        where = f"{source} {number}" if source == "line" else f"{source}:{number}"
        if not line.strip():
            continue
        try:
            record = _decode_line(line)
        except msgspec.DecodeError as exc:
            raise EmfError(f"{where}: not JSON ({exc})") from exc
        if not isinstance(record, dict) or "_aws" not in record:
            skipped += 1
            continue
        records += 1
        try:
            for key, unit, sample in _record_samples(record, where):
                series[key].append(sample)
                units[key] = unit
        except (KeyError, TypeError) as exc:
            raise EmfError(f"{where}: malformed EMF record ({exc!r})") from exc
    return RecordedMetrics(
        series={k: tuple(v) for k, v in series.items()},
        units=units,
        records=records,
        skipped_lines=skipped,
    )


def read_emf(paths: Sequence[Path]) -> RecordedMetrics:
    """Parse one or more EMF files (one per process, say) as one recording."""
    series: defaultdict[SeriesKey, list[Sample]] = defaultdict(list)
    units: dict[SeriesKey, str] = {}
    recorded = RecordedMetrics(series={}, units={}, records=0, skipped_lines=0)
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            recorded = _parse_into(
                handle, str(path), series, units, recorded.records, recorded.skipped_lines
            )
    return recorded
