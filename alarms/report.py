"""Alarm timelines as a readable text table (UTC) or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from alarms.evaluate import AlarmTimeline, Evaluation, recording_warnings
from app.telemetry.catalogue import metric_spec
from ops.alarm import MetricAlarm
from ops.emf import RecordedMetrics, SeriesKey

_OPERATORS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


def utc(epoch_seconds: float) -> datetime:
    """An epoch second as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch_seconds, UTC)


def period_label(start: int, period: int, with_date: bool = True) -> str:
    """`2025-11-27 09:15-09:20` for a period (UTC)."""
    begin, end = utc(start), utc(start + period)
    day = f"{begin:%Y-%m-%d} " if with_date else ""
    return f"{day}{begin:%H:%M}-{end:%H:%M}"


def number(value: float | None) -> str:
    """A value at a precision fit for a table: 11,664 / 403.6 / 40.62 / 0.9875."""
    if value is None:
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.4f}"


def describe_alarm(alarm: MetricAlarm) -> str:
    """One line: statistic of metric, comparison, period, M of N, missing-data treatment."""
    op = _OPERATORS[alarm.comparison_operator]
    if alarm.metrics:
        returned = next(q for q in alarm.metrics if q.return_data)
        what = f"{returned.label or returned.id} = {returned.expression}"
    else:
        what = f"{alarm.stat} of {SeriesKey.of(alarm.metric()).describe()}"
    low = (
        f", low samples {alarm.evaluate_low_sample_count_percentile}"
        if alarm.evaluate_low_sample_count_percentile
        else ""
    )
    return (
        f"{what} {op} {alarm.threshold:g}; period {alarm.evaluation_period()} s, "
        f"{alarm.datapoints_to_alarm} of {alarm.evaluation_periods}, "
        f"missing data {alarm.treat_missing_data}{low}"
    )


def _unit(alarm: MetricAlarm, recorded: RecordedMetrics) -> str:
    if alarm.metrics:
        return "expression"
    recorded_unit = recorded.units.get(SeriesKey.of(alarm.metric()))
    if recorded_unit is not None:
        return recorded_unit
    try:
        return metric_spec(alarm.metric().metric_name).unit
    except KeyError:
        return "no data"


def _first_alarm(timeline: AlarmTimeline) -> str:
    first = timeline.first_alarm()
    if first is None:
        return "never"
    return period_label(first.start, timeline.alarm.evaluation_period(), with_date=False)


def format_timelines(
    timelines: Sequence[AlarmTimeline], recorded: RecordedMetrics, changes_only: bool = False
) -> str:
    """A summary table of all alarms, then each alarm's state per period (UTC)."""
    lines = [_recording_line(recorded), ""]
    width = max([len(t.alarm.alarm_name) for t in timelines] + [5])
    lines.append(f"{'alarm':<{width}}  {'final':<17}  {'first ALARM after':<17}  periods in ALARM")
    for timeline in timelines:
        alarmed = sum(e.state == "ALARM" for e in timeline.evaluations)
        if timeline.skipped is not None:
            lines.append(f"{timeline.alarm.alarm_name:<{width}}  {'skipped':<17}  -")
            continue
        lines.append(
            f"{timeline.alarm.alarm_name:<{width}}  {timeline.final_state():<17}  "
            f"{_first_alarm(timeline):<17}  {alarmed} of {len(timeline.evaluations)}"
        )
    for timeline in timelines:
        lines += ["", *_alarm_block(timeline, recorded, changes_only)]
    return "\n".join(lines) + "\n"


def _recording_line(recorded: RecordedMetrics) -> str:
    span = recorded.time_range_ms()
    if span is None:
        return f"recording: {recorded.records} EMF records, no metric samples"
    first, last = (utc(t / 1000) for t in span)
    return (
        f"recording: {recorded.records} EMF records, {len(recorded.series)} series, "
        f"{first:%Y-%m-%d %H:%M:%S} to {last:%H:%M:%S} UTC"
    )


def _alarm_block(
    timeline: AlarmTimeline, recorded: RecordedMetrics, changes_only: bool
) -> list[str]:
    alarm = timeline.alarm
    period = alarm.evaluation_period()
    span = recorded.time_range_ms()
    last_sample = 0 if span is None else span[1] // 1000
    value_header = f"value ({_unit(alarm, recorded)})"
    width = max(12, len(value_header))
    block = [f"{alarm.alarm_name}: {describe_alarm(alarm)}"]
    if timeline.skipped is not None:
        return [*block, f"  {timeline.skipped}"]
    block += [f"  ! {note}" for note in recording_warnings(alarm, recorded)]
    block.append(
        f"  {'period (UTC)':<22}  {value_header:>{width}}  {'samples':>8}  {'state':<19}  why"
    )
    previous = None
    for i, evaluation in enumerate(timeline.evaluations):
        changed = evaluation.state != previous
        previous = evaluation.state
        if changes_only and not changed and i != len(timeline.evaluations) - 1:
            continue
        samples = "-" if evaluation.sample_count is None else f"{evaluation.sample_count:,.0f}"
        why = evaluation.reason
        if evaluation.start + period > last_sample:
            why += " [period extends past the recording]"
        block.append(
            f"  {period_label(evaluation.start, period):<22}  {number(evaluation.value):>{width}}  "
            f"{samples:>8}  {evaluation.state:<17}{' *' if changed else '  '}  {why}"
        )
    return block


def _evaluation_json(evaluation: Evaluation, period: int) -> dict[str, Any]:
    return {
        "period_start": utc(evaluation.start).isoformat(),
        "period_end": utc(evaluation.start + period).isoformat(),
        "value": evaluation.value,
        "sample_count": evaluation.sample_count,
        "state": evaluation.state,
        "reason": evaluation.reason,
    }


def _alarm_json(timeline: AlarmTimeline, recorded: RecordedMetrics) -> dict[str, Any]:
    period = timeline.alarm.evaluation_period()
    first = timeline.first_alarm()
    return {
        "name": timeline.alarm.alarm_name,
        "definition": describe_alarm(timeline.alarm),
        "final_state": timeline.final_state(),
        "skipped": timeline.skipped,
        "first_alarm_period_start": None if first is None else utc(first.start).isoformat(),
        "warnings": [] if timeline.skipped else recording_warnings(timeline.alarm, recorded),
        "evaluations": [_evaluation_json(e, period) for e in timeline.evaluations],
    }


def timelines_json(timelines: Sequence[AlarmTimeline], recorded: RecordedMetrics) -> bytes:
    """The same report as JSON: recording summary, then each alarm with its evaluations."""
    span = recorded.time_range_ms()
    document = {
        "recording": {
            "records": recorded.records,
            "series": len(recorded.series),
            "first_sample": None if span is None else utc(span[0] / 1000).isoformat(),
            "last_sample": None if span is None else utc(span[1] / 1000).isoformat(),
        },
        "alarms": [_alarm_json(t, recorded) for t in timelines],
    }
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"
