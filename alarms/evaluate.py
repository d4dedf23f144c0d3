"""Offline alarm evaluation with CloudWatch's rules, over recorded metrics.

An alarm is evaluated once per period, when the period closes. CloudWatch fetches an
*evaluation range* longer than EvaluationPeriods (N); the evaluator uses N + 2 periods,
which is the range of the examples in CloudWatch's documentation (5 for N = 3). Then
(`next_state`):

1. at least N real datapoints in the range: the most recent N real ones are compared
   with the threshold; M (DatapointsToAlarm) or more breaching -> ALARM, else OK;
   TreatMissingData plays no part;
2. no real datapoint: missing -> INSUFFICIENT_DATA, ignore -> state kept,
   breaching -> ALARM, notBreaching -> OK;
3. some, but fewer than N: breaching/notBreaching fill the gap with breaching/good
   datapoints and count M of N. For missing and ignore: M or more real breaching -> ALARM;
   any real non-breaching datapoint -> OK; otherwise ignore keeps the state, and missing
   gives ALARM when the newest period is empty (the metric stopped and CloudWatch keeps
   re-evaluating its last datapoints, all breaching) or INSUFFICIENT_DATA when data is
   still arriving but too little of it.

Alarms are defined for every environment (`qis-${Environment}-...`, metrics filtered by
`Environment`); a recording is evaluated for one (`recording_environment`). Alarms on
namespaces the recording does not hold (the managed services' AWS/RDS, AWS/Kafka, ...:
a recording holds what the service records, Custom/QIS) are skipped, and say so; an
alarm whose metric is not in the recording gets a warning naming the near matches
(`recording_warnings`), since it would otherwise just see "no datapoint".

These reproduce every row of the documentation's missing-data tables
(`alarms/tests/cloudwatch_missing_data_tables.yaml`). Percentile alarms with
EvaluateLowSampleCountPercentile=ignore do not count datapoints with fewer samples than
10/(1-p) (p >= 0.5) or 10/p (they are not statistically significant), and keep their state
when the newest datapoint is such a one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Literal

import msgspec

from ops import metric_math
from ops.alarm import Metric, MetricAlarm, MetricStat, TreatMissingData, percentile_of
from ops.emf import EmfError, RecordedMetrics, SeriesKey
from ops.naming import LOCAL, environment_values, resolve
from ops.statistics import PeriodStatistics, aggregate, is_low_sample, period_start

State = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
EXTRA_RANGE = 2


class Datapoint(msgspec.Struct, frozen=True):
    """The alarm's statistic for one period; `value` None when the period has no data."""

    start: int
    value: float | None
    sample_count: float | None = None
    low_sample: bool = False


class Evaluation(msgspec.Struct, frozen=True):
    """The alarm's state after evaluating the period starting at `start` (epoch seconds)."""

    start: int
    value: float | None
    sample_count: float | None
    state: State
    reason: str


class AlarmTimeline(msgspec.Struct, frozen=True):
    """An alarm's evaluations in time order."""

    alarm: MetricAlarm
    evaluations: tuple[Evaluation, ...]
    # Why the alarm was not evaluated (its namespaces are not in the recording), or None.
    skipped: str | None = None

    def final_state(self) -> State:
        """The state after the last evaluation (INSUFFICIENT_DATA if never evaluated)."""
        return self.evaluations[-1].state if self.evaluations else "INSUFFICIENT_DATA"

    def first_alarm(self) -> Evaluation | None:
        """The first evaluation that ended in ALARM."""
        return next((e for e in self.evaluations if e.state == "ALARM"), None)


def evaluation_range(alarm: MetricAlarm) -> int:
    """How many periods the evaluator fetches: EvaluationPeriods + 2."""
    return alarm.evaluation_periods + EXTRA_RANGE


def breaches(alarm: MetricAlarm, value: float) -> bool:
    """Whether one datapoint is on the alarming side of the threshold."""
    match alarm.comparison_operator:
        case "GreaterThanThreshold":
            return value > alarm.threshold
        case "GreaterThanOrEqualToThreshold":
            return value >= alarm.threshold
        case "LessThanThreshold":
            return value < alarm.threshold
        case "LessThanOrEqualToThreshold":
            return value <= alarm.threshold


def next_state(
    window: Sequence[bool | None],
    *,
    datapoints_to_alarm: int,
    evaluation_periods: int,
    treat_missing_data: TreatMissingData,
    current: State,
) -> tuple[State, str]:
    """CloudWatch's decision over the evaluation range (oldest first; None = missing)."""
    m, n = datapoints_to_alarm, evaluation_periods
    real = [b for b in window if b is not None]
    if len(real) >= n:
        breaching = sum(real[-n:])
        state: State = "ALARM" if breaching >= m else "OK"
        return state, f"{breaching} of the last {n} datapoints breaching (need {m})"
    if not real:
        match treat_missing_data:
            case "missing":
                return "INSUFFICIENT_DATA", "no datapoint in the evaluation range"
            case "ignore":
                return current, "no datapoint; missing data ignored, state kept"
            case "breaching":
                return "ALARM", "no datapoint; missing data treated as breaching"
            case "notBreaching":
                return "OK", "no datapoint; missing data treated as not breaching"
    gap = n - len(real)
    breaching = sum(real)
    if treat_missing_data in ("breaching", "notBreaching"):
        filled = breaching + (gap if treat_missing_data == "breaching" else 0)
        state = "ALARM" if filled >= m else "OK"
        return state, (
            f"{len(real)} real + {gap} missing as {treat_missing_data}: "
            f"{filled} of {n} breaching (need {m})"
        )
    if breaching >= m:
        return "ALARM", f"{breaching} real datapoints breaching (need {m})"
    if breaching < len(real):
        return "OK", f"only {len(real)} of {n} datapoints, {breaching} breaching (need {m})"
    if treat_missing_data == "ignore":
        return current, f"only {len(real)} of {n} datapoints, all breaching; state kept"
    if window[-1] is None:
        return "ALARM", "metric stopped; its last datapoints all breach"
    return "INSUFFICIENT_DATA", f"only {len(real)} of {n} datapoints"


def evaluate_datapoints(
    alarm: MetricAlarm,
    datapoints: Sequence[Datapoint],
    *,
    initial_state: State = "INSUFFICIENT_DATA",
    range_length: int | None = None,
) -> tuple[Evaluation, ...]:
    """Evaluate after each period of `datapoints` (consecutive periods, oldest first)."""
    length = range_length or evaluation_range(alarm)
    ignore_low_samples = alarm.evaluate_low_sample_count_percentile == "ignore"
    state = initial_state
    evaluations: list[Evaluation] = []
    for i, newest in enumerate(datapoints):
        in_range = datapoints[max(0, i - length + 1) : i + 1]
        window: list[bool | None] = [None] * (length - len(in_range))
        window += [
            None
            if d.value is None or (ignore_low_samples and d.low_sample)
            else breaches(alarm, d.value)
            for d in in_range
        ]
        if ignore_low_samples and newest.value is not None and newest.low_sample:
            reason = f"low sample count ({newest.sample_count:g}): percentile ignored, state kept"
        else:
            state, reason = next_state(
                window,
                datapoints_to_alarm=alarm.datapoints_to_alarm,
                evaluation_periods=alarm.evaluation_periods,
                treat_missing_data=alarm.treat_missing_data,
                current=state,
            )
        evaluations.append(
            Evaluation(newest.start, newest.value, newest.sample_count, state, reason)
        )
    return tuple(evaluations)


def _stat_values(
    stat: MetricStat, metrics: RecordedMetrics, starts: Sequence[int]
) -> list[float | None]:
    periods = aggregate(metrics.samples(stat.metric), stat.period)
    found = (periods.get(start) for start in starts)
    return [None if p is None else p.value(stat.stat) for p in found]


def _math_values(
    alarm: MetricAlarm, metrics: RecordedMetrics, starts: Sequence[int]
) -> list[float | None]:
    queries = {q.id: q for q in alarm.metrics}
    resolved: dict[str, list[float | None]] = {}

    def values_of(query_id: str, seen: frozenset[str]) -> list[float | None]:
        if query_id in resolved:
            return resolved[query_id]
        if query_id not in queries or query_id in seen:
            raise metric_math.MetricMathError(f"{alarm.alarm_name}: bad reference {query_id}")
        query = queries[query_id]
        if query.metric_stat is not None:
            result = _stat_values(query.metric_stat, metrics, starts)
        else:
            tree = metric_math.parse(query.expression or "")
            inputs = {
                ref: values_of(ref, seen | {query_id}) for ref in metric_math.references(tree)
            }
            result = [
                metric_math.evaluate(tree, {ref: v[i] for ref, v in inputs.items()})
                for i in range(len(starts))
            ]
        resolved[query_id] = result
        return result

    returned = next(q for q in alarm.metrics if q.return_data)
    return values_of(returned.id, frozenset())


def alarm_datapoints(
    alarm: MetricAlarm, metrics: RecordedMetrics, starts: Sequence[int]
) -> list[Datapoint]:
    """The alarm's statistic (or expression) at each period start in `starts`."""
    if alarm.metrics:
        return [
            Datapoint(s, v)
            for s, v in zip(starts, _math_values(alarm, metrics, starts), strict=True)
        ]
    periods: Mapping[int, PeriodStatistics] = aggregate(
        metrics.samples(alarm.metric()), alarm.evaluation_period()
    )
    fraction: Fraction | None = percentile_of(alarm.stat)
    datapoints = []
    for start in starts:
        found = periods.get(start)
        if found is None:
            datapoints.append(Datapoint(start, None))
            continue
        low = fraction is not None and is_low_sample(found.sample_count, fraction)
        datapoints.append(Datapoint(start, found.value(alarm.stat), found.sample_count, low))
    return datapoints


def period_starts(metrics: RecordedMetrics, period: int) -> list[int]:
    """Every period start from the first to the last recorded sample."""
    span = metrics.time_range_ms()
    if span is None:
        return []
    first, last = (period_start(t, period) for t in span)
    return list(range(first, last + 1, period))


def recording_environment(metrics: RecordedMetrics, given: str | None = None) -> str:
    """`given`, else the one `Environment` value the recording's series carry, else local.

    EmfError when the recording mixes environments and none is given."""
    if given:
        return given
    found = {
        value for key in metrics.series for name, value in key.dimensions if name == "Environment"
    }
    if len(found) > 1:
        raise EmfError(
            f"the recording holds environments {', '.join(sorted(found))}: "
            "choose one with --environment"
        )
    return found.pop() if found else LOCAL


def skip_reason(alarm: MetricAlarm, metrics: RecordedMetrics) -> str | None:
    """Why `alarm` cannot be evaluated over `metrics` (none of its namespaces recorded)."""
    recorded = {key.namespace for key in metrics.series}
    wanted = alarm.namespaces()
    if wanted & recorded:
        return None
    return (
        f"skipped: reads {', '.join(sorted(wanted))}, which the recording does not hold "
        f"(it holds {', '.join(sorted(recorded)) or 'nothing'})"
    )


def evaluate_recording(
    alarms: Sequence[MetricAlarm], metrics: RecordedMetrics, environment: str | None = None
) -> tuple[AlarmTimeline, ...]:
    """Each alarm's timeline over the whole recording, starting INSUFFICIENT_DATA, for
    `environment` (default: `recording_environment`); skipped alarms have none."""
    values = environment_values(recording_environment(metrics, environment))
    timelines = []
    for definition in alarms:
        alarm = resolve(definition, values)
        reason = skip_reason(alarm, metrics)
        if reason is not None:
            timelines.append(AlarmTimeline(alarm, (), skipped=reason))
            continue
        starts = period_starts(metrics, alarm.evaluation_period())
        datapoints = alarm_datapoints(alarm, metrics, starts)
        timelines.append(AlarmTimeline(alarm, evaluate_datapoints(alarm, datapoints)))
    return tuple(timelines)


def alarm_metrics(alarm: MetricAlarm) -> list[Metric]:
    """The metrics an alarm reads (by MetricStat; Metrics Insights queries name none)."""
    if not alarm.metrics:
        return [alarm.metric()]
    return [q.metric_stat.metric for q in alarm.metrics if q.metric_stat is not None]


def recording_warnings(alarm: MetricAlarm, metrics: RecordedMetrics) -> list[str]:
    """What the alarm reads that the recording lacks, with the near matches it holds.

    CloudWatch matches a metric's dimension set exactly, so a recording without, say, the
    `Route` or `Environment` dimension gives the alarm "no datapoint" in every period,
    which looks like a quiet service. For each metric name the alarm reads: a series it
    wants that is missing while the same name is recorded with other dimensions is named
    with those near matches; a name with no series of the alarm's at all is named once. A
    sum over several series (dead letters by stage) is not warned about for the members
    that are simply absent while others are recorded.
    """
    own = {SeriesKey.of(metric) for metric in alarm_metrics(alarm)}
    groups: dict[tuple[str, str], list[SeriesKey]] = {}
    for key in sorted(own):
        groups.setdefault((key.namespace, key.name), []).append(key)
    notes = []
    for (namespace, name), keys in groups.items():
        near = sorted(
            k.describe()
            for k in metrics.series
            if k.namespace == namespace and k.name.lower() == name.lower() and k not in own
        )
        missing = [k for k in keys if k not in metrics.series]
        if not missing:
            continue
        wanted = missing[0].describe() + (
            f" (and {len(missing) - 1} more series)" if len(missing) > 1 else ""
        )
        if near:
            notes.append(f"{wanted} not recorded; near matches: {', '.join(near)}")
        elif len(missing) == len(keys):
            notes.append(
                f"{wanted} not recorded, and no other {namespace} {name} series either: "
                "every period is 'no datapoint'"
            )
    return notes
