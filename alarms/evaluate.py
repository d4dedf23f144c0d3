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
from ops.alarm import MetricAlarm, MetricStat, TreatMissingData, percentile_of
from ops.emf import RecordedMetrics, SeriesKey
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


def evaluate_recording(
    alarms: Sequence[MetricAlarm], metrics: RecordedMetrics
) -> tuple[AlarmTimeline, ...]:
    """Each alarm's timeline over the whole recording, starting INSUFFICIENT_DATA."""
    timelines = []
    for alarm in alarms:
        starts = period_starts(metrics, alarm.evaluation_period())
        datapoints = alarm_datapoints(alarm, metrics, starts)
        timelines.append(AlarmTimeline(alarm, evaluate_datapoints(alarm, datapoints)))
    return tuple(timelines)


def unmatched_series(alarm: MetricAlarm, metrics: RecordedMetrics) -> list[str]:
    """Alarm metrics absent from the recording while look-alikes (other case/dimensions) exist."""
    wanted = (
        [alarm.metric()]
        if not alarm.metrics
        else [q.metric_stat.metric for q in alarm.metrics if q.metric_stat is not None]
    )
    # The alarm's own series are not look-alikes: a sum over stages reads several series of
    # one metric, and a stage that set nothing aside is simply not recorded.
    own = {SeriesKey.of(metric) for metric in wanted}
    notes = []
    for metric in wanted:
        key = SeriesKey.of(metric)
        if key in metrics.series:
            continue
        similar = [
            k.describe()
            for k in metrics.series
            if k.name.lower() == key.name.lower() and k not in own
        ]
        if similar:
            notes.append(f"{key.describe()} not recorded; found {', '.join(sorted(similar))}")
    return notes
