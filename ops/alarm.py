"""Metric alarms as typed values mirroring CloudWatch `PutMetricAlarm` parameters.

Field names are snake_case here and PascalCase on the wire (`msgspec` renames them), so
`put_metric_alarm_params(alarm)` is exactly the keyword arguments boto3 takes, and the
same dict is an `AWS::CloudWatch::Alarm` resource's `Properties`.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Literal

import msgspec

ComparisonOperator = Literal[
    "GreaterThanThreshold",
    "GreaterThanOrEqualToThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
]
TreatMissingData = Literal["missing", "ignore", "breaching", "notBreaching"]
Statistic = Literal["SampleCount", "Average", "Sum", "Minimum", "Maximum"]
LowSampleCount = Literal["evaluate", "ignore"]

STATISTICS: tuple[Statistic, ...] = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d{1,10})?)$")
_INSIGHTS_SCHEMA = re.compile(r"\bFROM\s+SCHEMA\(\s*\"([^\"]+)\"", re.IGNORECASE)


class AlarmDefinitionError(ValueError):
    """An alarm or metric reference does not describe something CloudWatch would accept."""


class _Wire(msgspec.Struct, frozen=True, kw_only=True, rename="pascal", omit_defaults=True):
    pass


class Dimension(_Wire, frozen=True):
    """One CloudWatch dimension: a name and a string value."""

    name: str
    value: str


class Metric(_Wire, frozen=True):
    """A metric identity: namespace, name and the exact dimension set it is published with."""

    namespace: str
    metric_name: str
    dimensions: tuple[Dimension, ...] = ()

    def dimension_map(self) -> dict[str, str]:
        """Dimensions as name -> value."""
        return {d.name: d.value for d in self.dimensions}


class MetricStat(_Wire, frozen=True):
    """A metric with the statistic and period it is aggregated with."""

    metric: Metric
    period: int
    stat: str
    unit: str | None = None

    def __post_init__(self) -> None:
        parse_statistic(self.stat)


class MetricDataQuery(_Wire, frozen=True):
    """One entry of a metric-math alarm's `Metrics`: a metric (`m*`) or an expression (`e*`).

    An expression that is a Metrics Insights query (`SELECT ... FROM SCHEMA(...)`) needs
    its own `period`; metric math takes the period of the metrics it reads.
    """

    id: str
    metric_stat: MetricStat | None = None
    expression: str | None = None
    label: str | None = None
    return_data: bool = False
    period: int | None = None

    def __post_init__(self) -> None:
        if (self.metric_stat is None) == (self.expression is None):
            raise AlarmDefinitionError(
                f"query {self.id}: give exactly one of metric_stat, expression"
            )


class MetricAlarm(_Wire, frozen=True):
    """A CloudWatch metric alarm: one metric with a statistic, or metric math via `metrics`."""

    alarm_name: str
    alarm_description: str
    comparison_operator: ComparisonOperator
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing_data: TreatMissingData
    actions_enabled: bool = True
    namespace: str | None = None
    metric_name: str | None = None
    dimensions: tuple[Dimension, ...] = ()
    statistic: Statistic | None = None
    extended_statistic: str | None = None
    period: int | None = None
    unit: str | None = None
    evaluate_low_sample_count_percentile: LowSampleCount | None = None
    metrics: tuple[MetricDataQuery, ...] = ()

    def __post_init__(self) -> None:
        name = self.alarm_name
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise AlarmDefinitionError(f"{name}: need 1 <= DatapointsToAlarm <= EvaluationPeriods")
        if self.metrics:
            single = (self.namespace, self.metric_name, self.statistic, self.extended_statistic)
            if any(v is not None for v in single) or self.period is not None:
                raise AlarmDefinitionError(f"{name}: metric math alarms take only `metrics`")
            returned = [q for q in self.metrics if q.return_data]
            if len(returned) != 1:
                raise AlarmDefinitionError(f"{name}: exactly one query must have ReturnData")
            return
        if self.namespace is None or self.metric_name is None or self.period is None:
            raise AlarmDefinitionError(f"{name}: needs namespace, metric_name and period")
        if (self.statistic is None) == (self.extended_statistic is None):
            raise AlarmDefinitionError(f"{name}: give exactly one of statistic, extended_statistic")
        if self.extended_statistic is not None:
            if percentile_of(self.extended_statistic) is None:
                raise AlarmDefinitionError(f"{name}: only pNN extended statistics are supported")
        elif self.evaluate_low_sample_count_percentile is not None:
            raise AlarmDefinitionError(f"{name}: the low-sample rule applies to percentiles only")

    @property
    def stat(self) -> str:
        """The statistic of a single-metric alarm (`Average`, `p95`, ...)."""
        stat = self.extended_statistic or self.statistic
        if stat is None:
            raise AlarmDefinitionError(f"{self.alarm_name} is a metric math alarm")
        return stat

    def metric(self) -> Metric:
        """The metric of a single-metric alarm."""
        if self.namespace is None or self.metric_name is None:
            raise AlarmDefinitionError(f"{self.alarm_name} is a metric math alarm")
        return Metric(
            namespace=self.namespace, metric_name=self.metric_name, dimensions=self.dimensions
        )

    def namespaces(self) -> set[str]:
        """The namespaces the alarm reads: its metrics', and Metrics Insights' SCHEMA(...)."""
        if self.namespace is not None:
            return {self.namespace}
        found = {q.metric_stat.metric.namespace for q in self.metrics if q.metric_stat}
        for query in self.metrics:
            found |= set(_INSIGHTS_SCHEMA.findall(query.expression or ""))
        return found

    def evaluation_period(self) -> int:
        """The period, in seconds, of the datapoints this alarm evaluates."""
        if self.period is not None:
            return self.period
        periods = {q.metric_stat.period for q in self.metrics if q.metric_stat is not None}
        periods |= {q.period for q in self.metrics if q.period is not None}
        if len(periods) != 1:
            raise AlarmDefinitionError(f"{self.alarm_name}: metric math needs one common period")
        return periods.pop()


def parse_statistic(stat: str) -> Statistic | Fraction:
    """A plain statistic name, or a percentile as a fraction in (0, 1) for `pNN(.NN)`."""
    for name in STATISTICS:
        if stat == name:
            return name
    percentile = percentile_of(stat)
    if percentile is None:
        raise AlarmDefinitionError(f"unsupported statistic {stat!r}")
    return percentile


def percentile_of(stat: str) -> Fraction | None:
    """`p95` -> 19/20, exactly (so the low-sample bound 10/(1-p) is exact); None otherwise."""
    match = _PERCENTILE.match(stat)
    if match is None:
        return None
    value = Fraction(match.group(1)) / 100
    return value if 0 < value < 1 else None


def put_metric_alarm_params(
    alarm: MetricAlarm, alarm_actions: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The keyword arguments of `cloudwatch.put_metric_alarm` for `alarm`."""
    params: dict[str, Any] = msgspec.to_builtins(alarm)
    params["ActionsEnabled"] = alarm.actions_enabled
    params["Threshold"] = float(alarm.threshold)
    if alarm.metrics:
        # ReturnData defaults to true when omitted, and an alarm needs it false on every
        # query but the one it watches: write it on each, never left to the default.
        params["Metrics"] = [
            {**query, "ReturnData": given.return_data}
            for query, given in zip(params["Metrics"], alarm.metrics, strict=True)
        ]
    if alarm_actions:
        params["AlarmActions"] = list(alarm_actions)
        params["OKActions"] = list(alarm_actions)
    return params
