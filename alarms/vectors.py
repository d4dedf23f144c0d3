"""Alarm test vectors in a promtool-like YAML: input series per period, expected states.

```yaml
tests:
  - name: latency fires after the second breaching period
    alarm: HighIngestionLatency            # by name, or {Base: NAME, ...overrides},
                                           # or an inline PutMetricAlarm-shaped mapping
    initial_state: OK                      # default INSUFFICIENT_DATA
    evaluation_range: 5                    # default EvaluationPeriods + 2
    input_series:
      - values: "30 30 250 250 _ 30x3"     # one sample per period, _ = missing, 30x3 = 3 times
      - metric: HttpRequests               # metric/dimensions default to the alarm's metric
        dimensions: {Environment: local, Service: api, StatusClass: 5xx}
        distributions:                     # one value/count distribution per period
          - {values: [10, 300], counts: [190, 10]}
          - null
    expected:
      - {at: 3, state: ALARM, value: 250}  # at = period index, value optional
```

Period `i` starts at 2025-11-27T00:00:00Z + i * Period, so every period is aligned.
The QIS alarms are named by their base name (`DeadLetters`, or `qis-local-DeadLetters`)
and evaluated for the environment `local`: explicit `dimensions` of Custom/QIS series
give `Environment: local`, as a local recording does. The managed-service alarms read
the stand-in resource ids of `STAND_IN_IDS` (`LoadBalancer: app/qis-local/1`, ...);
those whose query is Metrics Insights SQL cannot be evaluated offline.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import yaml

from alarms.evaluate import Evaluation, State, alarm_datapoints, evaluate_datapoints
from app.telemetry.catalogue import NAMESPACE
from ops.alarm import MetricAlarm
from ops.emf import RecordedMetrics, Sample, SeriesKey
from ops.naming import LOCAL, base_name, environment_values, resolve

EPOCH = 1_764_201_600  # 2025-11-27T00:00:00Z


class VectorError(ValueError):
    """A vector file that does not follow the format."""


class Distribution(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Values with their counts, as an EMF histogram reports them."""

    values: list[float]
    counts: list[float]


class InputSeries(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One metric's datapoints, period by period."""

    metric: str | None = None
    namespace: str = NAMESPACE
    dimensions: dict[str, str] | None = None
    values: str | None = None
    distributions: list[Distribution | None] | None = None


class Expectation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The state (and optionally the statistic's value) after period `at` is evaluated."""

    at: int
    state: State
    value: float | None = None


class VectorCase(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One alarm, its input series, what must come out."""

    name: str
    alarm: str | dict[str, Any]
    input_series: list[InputSeries]
    expected: list[Expectation]
    initial_state: State = "INSUFFICIENT_DATA"
    evaluation_range: int | None = None


class VectorFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A file of cases; `anchors` holds YAML anchors shared by the cases."""

    tests: list[VectorCase]
    description: str = ""
    source: str = ""
    anchors: Any = None


class CaseResult(msgspec.Struct, frozen=True):
    """A case's evaluations and the expectations it failed (empty when it passed)."""

    case: VectorCase
    evaluations: tuple[Evaluation, ...]
    failures: tuple[str, ...]


def load_vectors(path: Path) -> VectorFile:
    """Read and type-check one vector file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return msgspec.convert(data, VectorFile)
    except msgspec.ValidationError as exc:
        raise VectorError(f"{path}: {exc}") from exc


def expand_values(text: str) -> list[float | None]:
    """`"1 _ 2x3 _x2"` -> [1, None, 2, 2, 2, None, None]."""
    expanded: list[float | None] = []
    for token in text.split():
        value, _, times = token.partition("x")
        repeat = int(times) if times else 1
        expanded += [None if value == "_" else float(value)] * repeat
    return expanded


# Resource ids the managed-service alarms read in test vectors (deploy-time parameters).
STAND_IN_IDS = {
    "LoadBalancerFullName": "app/qis-local/1",
    "TargetGroupFullName": "targetgroup/qis-local-api/1",
    "EventStoreClusterId": "qis-local",
    "RedisClusterId": "qis-local-001",
    "MskClusterName": "qis-local",
}


def vector_alarms(alarms: Sequence[MetricAlarm]) -> dict[str, MetricAlarm]:
    """Base name -> the alarm as defined for the environment `local` (stand-in ids)."""
    values = {**environment_values(LOCAL), **STAND_IN_IDS}
    return {base_name(a.alarm_name): resolve(a, values) for a in alarms}


def _known(name: str, known: Mapping[str, MetricAlarm]) -> MetricAlarm:
    found = known.get(name) or known.get(base_name(name))
    if found is None:
        raise VectorError(f"unknown alarm {name}")
    return found


def resolve_alarm(spec: str | dict[str, Any], known: Mapping[str, MetricAlarm]) -> MetricAlarm:
    """An alarm by name, a named alarm with overrides (`Base`), or an inline definition."""
    if isinstance(spec, str):
        return _known(spec, known)
    fields = dict(spec)
    base = fields.pop("Base", None)
    if base is not None:
        fields = {**msgspec.to_builtins(_known(base, known)), **fields}
    fields.setdefault("AlarmName", "test-vector")
    fields.setdefault("AlarmDescription", "test vector")
    try:
        return msgspec.convert(fields, MetricAlarm)
    except msgspec.ValidationError as exc:
        raise VectorError(f"alarm {fields['AlarmName']}: {exc}") from exc


def _series_key(series: InputSeries, alarm: MetricAlarm) -> SeriesKey:
    if series.metric is None:
        if alarm.metrics:
            raise VectorError("metric math alarms need `metric` on every input series")
        return SeriesKey.of(alarm.metric())
    pairs = tuple(sorted((series.dimensions or {}).items()))
    return SeriesKey(series.namespace, series.metric, pairs)


def _samples(series: InputSeries, period: int) -> list[tuple[int, Sample]]:
    if (series.values is None) == (series.distributions is None):
        raise VectorError("give exactly one of values, distributions")
    found: list[tuple[int, Sample]] = []
    if series.values is not None:
        for i, value in enumerate(expand_values(series.values)):
            stamp = (EPOCH + i * period) * 1000
            if value is not None:
                found.append((i, Sample.of_values(stamp, [value])))
        return found
    for i, dist in enumerate(series.distributions or []):
        if dist is None:
            continue
        total = math.fsum(v * c for v, c in zip(dist.values, dist.counts, strict=True))
        sample = Sample(
            (EPOCH + i * period) * 1000,
            tuple(dist.values),
            tuple(dist.counts),
            math.fsum(dist.counts),
            total,
            min(dist.values),
            max(dist.values),
        )
        found.append((i, sample))
    return found


def run_case(case: VectorCase, known: Mapping[str, MetricAlarm]) -> CaseResult:
    """Evaluate one case and compare with its expectations."""
    alarm = resolve_alarm(case.alarm, known)
    period = alarm.evaluation_period()
    series: dict[SeriesKey, list[Sample]] = defaultdict(list)
    length = 0
    for given in case.input_series:
        key = _series_key(given, alarm)
        for index, sample in _samples(given, period):
            series[key].append(sample)
            length = max(length, index + 1)
    length = max([length, *(e.at + 1 for e in case.expected)])
    recorded = RecordedMetrics(
        series={k: tuple(v) for k, v in series.items()}, units={}, records=0, skipped_lines=0
    )
    starts = [EPOCH + i * period for i in range(length)]
    evaluations = evaluate_datapoints(
        alarm,
        alarm_datapoints(alarm, recorded, starts),
        initial_state=case.initial_state,
        range_length=case.evaluation_range,
    )
    failures = []
    for expected in case.expected:
        got = evaluations[expected.at]
        if got.state != expected.state:
            failures.append(
                f"at {expected.at}: expected {expected.state}, got {got.state} ({got.reason})"
            )
        if expected.value is not None and (
            got.value is None or not math.isclose(got.value, expected.value, rel_tol=1e-9)
        ):
            failures.append(f"at {expected.at}: expected value {expected.value}, got {got.value}")
    return CaseResult(case, evaluations, tuple(failures))
