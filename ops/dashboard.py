"""CloudWatch dashboards as typed values, and the dashboard body JSON they produce.

Environment-specific values (load balancer, cluster ids, region, account) appear in the
body as `${Name}` placeholders: CloudFormation fills them with `Fn::Sub`, `qis dashboards
deploy` with `--parameter Name=value` and the client's region and account.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from ops.alarm import Metric, parse_statistic

REGION = "${AWS::Region}"
ACCOUNT = "${AWS::AccountId}"
THRESHOLD_RED = "#d62728"
GRID_WIDTH = 24

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9:]*)\}")


class UnresolvedPlaceholders(ValueError):
    """Deploy-time values are missing for some `${Name}` placeholders."""


class MetricLine(msgspec.Struct, frozen=True, kw_only=True):
    """One metric drawn with one statistic (and optionally its own period)."""

    metric: Metric
    stat: str
    label: str
    id: str | None = None
    visible: bool = True
    period: int | None = None
    color: str | None = None

    def __post_init__(self) -> None:
        parse_statistic(self.stat)


class ExpressionLine(msgspec.Struct, frozen=True, kw_only=True):
    """A metric-math expression over the widget's lines (ids), or a SEARCH expression."""

    expression: str
    label: str
    id: str
    color: str | None = None


Line = MetricLine | ExpressionLine


class Threshold(msgspec.Struct, frozen=True, kw_only=True):
    """A horizontal annotation, drawn as a dashed line (usually an alarm threshold)."""

    value: float
    label: str
    color: str = THRESHOLD_RED
    # The alarm using this threshold; the offline renderer shades the periods it was in ALARM.
    alarm: str | None = None


class MetricWidget(msgspec.Struct, frozen=True, kw_only=True):
    """A time-series graph: lines, one period, a labelled y axis, threshold lines."""

    title: str
    lines: tuple[Line, ...]
    period: int
    # Shown on the y axis, e.g. "milliseconds" or "requests per minute".
    y_label: str
    thresholds: tuple[Threshold, ...] = ()
    y_min: float | None = 0.0
    y_max: float | None = None
    stacked: bool = False
    width: int = 12
    height: int = 6


class AlarmStatusWidget(msgspec.Struct, frozen=True, kw_only=True):
    """The state of the named alarms, red when in ALARM."""

    title: str
    alarm_names: tuple[str, ...]
    width: int = GRID_WIDTH
    height: int = 3


class TextWidget(msgspec.Struct, frozen=True, kw_only=True):
    """A markdown header or note."""

    markdown: str
    width: int = GRID_WIDTH
    height: int = 1


Widget = MetricWidget | AlarmStatusWidget | TextWidget


class Dashboard(msgspec.Struct, frozen=True, kw_only=True):
    """A named dashboard: widgets in reading order, laid out left to right, top to bottom."""

    name: str
    widgets: tuple[Widget, ...]

    def metric_widgets(self) -> Iterator[MetricWidget]:
        """The graph widgets, in order."""
        return (w for w in self.widgets if isinstance(w, MetricWidget))


def alarm_arn(alarm_name: str) -> str:
    """The alarm's ARN with region and account placeholders."""
    return f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm_name}"


def _metric_row(line: MetricLine) -> list[Any]:
    row: list[Any] = [line.metric.namespace, line.metric.metric_name]
    for dimension in line.metric.dimensions:
        row += [dimension.name, dimension.value]
    options: dict[str, Any] = {"stat": line.stat, "label": line.label}
    if line.id is not None:
        options["id"] = line.id
    if not line.visible:
        options["visible"] = False
    if line.period is not None:
        options["period"] = line.period
    if line.color is not None:
        options["color"] = line.color
    row.append(options)
    return row


def _expression_row(line: ExpressionLine) -> list[Any]:
    options: dict[str, Any] = {"expression": line.expression, "label": line.label, "id": line.id}
    if line.color is not None:
        options["color"] = line.color
    return [options]


def _properties(widget: Widget) -> tuple[str, dict[str, Any]]:
    if isinstance(widget, TextWidget):
        return "text", {"markdown": widget.markdown}
    if isinstance(widget, AlarmStatusWidget):
        return "alarm", {
            "title": widget.title,
            "alarms": [alarm_arn(name) for name in widget.alarm_names],
            "sortBy": "stateUpdatedTimestamp",
        }
    rows = [
        _metric_row(line) if isinstance(line, MetricLine) else _expression_row(line)
        for line in widget.lines
    ]
    y_axis: dict[str, Any] = {"label": widget.y_label, "showUnits": False}
    if widget.y_min is not None:
        y_axis["min"] = widget.y_min
    if widget.y_max is not None:
        y_axis["max"] = widget.y_max
    # CloudWatch's defaults are left out (view timeSeries, not stacked): the bodies sit
    # in a template `aws cloudformation deploy` takes only up to 51,200 bytes of.
    properties: dict[str, Any] = {"title": widget.title, "region": REGION}
    if widget.stacked:
        properties["stacked"] = True
    properties.update(period=widget.period, metrics=rows, yAxis={"left": y_axis})
    if widget.thresholds:
        properties["annotations"] = {
            "horizontal": [
                {"label": t.label, "value": t.value, "color": t.color} for t in widget.thresholds
            ]
        }
    return "metric", properties


def dashboard_body(dashboard: Dashboard) -> dict[str, Any]:
    """The `DashboardBody` document, widgets placed on CloudWatch's 24-column grid."""
    widgets: list[dict[str, Any]] = []
    x = y = row_height = 0
    for widget in dashboard.widgets:
        if x + widget.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        kind, properties = _properties(widget)
        widgets.append(
            {
                "type": kind,
                "x": x,
                "y": y,
                "width": widget.width,
                "height": widget.height,
                "properties": properties,
            }
        )
        x += widget.width
        row_height = max(row_height, widget.height)
    return {"widgets": widgets}


def placeholders(text: str) -> set[str]:
    """The `${Name}` placeholders in `text`."""
    return set(_PLACEHOLDER.findall(text))


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every `${Name}` with `values[Name]`; all of them must be given."""
    missing = sorted(placeholders(text) - set(values))
    if missing:
        raise UnresolvedPlaceholders(
            "no value for " + ", ".join(missing) + " (give --parameter NAME=VALUE)"
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
