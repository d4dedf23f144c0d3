"""Draw the dashboards' graphs from a recording, as PNGs plus one HTML page, without AWS.

Every metric widget becomes one PNG: the widget's title, what is plotted, a y axis labelled
with its unit, a UTC time axis, the alarm threshold as a dashed red line with its value in
the legend. `index.html` shows them with the alarm timeline (a colour strip per alarm and a
table). Figures are built with matplotlib's object API (no pyplot, no global state).
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import cast

import msgspec
from matplotlib import dates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from alarms.evaluate import AlarmTimeline, period_starts
from alarms.report import describe_alarm, number, period_label, utc
from app.telemetry.catalogue import CATALOGUE
from ops import metric_math
from ops.dashboard import Dashboard, ExpressionLine, MetricLine, MetricWidget
from ops.emf import RecordedMetrics, SeriesKey
from ops.statistics import aggregate

STATE_COLOURS = {"OK": "#2ca02c", "ALARM": "#d62728", "INSUFFICIENT_DATA": "#9e9e9e"}
_SEARCH = re.compile(
    r"SEARCH\('\{(?P<schema>[^}]*)\}\s+MetricName=\"(?P<name>[^\"]+)\""
    r"(?P<filters>(?:\s+[A-Za-z]+=\"[^\"]*\")*)',\s*"
    r"'(?P<stat>[^']+)',\s*(?P<period>\d+)\)"
)
_DPI = 110
# matplotlib's date numbers (days since its epoch); cast because matplotlib leaves it untyped.
_date2num = cast(Callable[[datetime], float], dates.date2num)


def _x(epoch_seconds: float) -> float:
    """An epoch second as a matplotlib date number (x coordinate)."""
    return _date2num(utc(epoch_seconds))


COARSE_PERIOD = 300


class Curve(msgspec.Struct, frozen=True):
    """One plotted line: label, period, and (period start, value) points."""

    label: str
    period: int
    points: tuple[tuple[int, float], ...]
    color: str | None = None


class RenderedWidget(msgspec.Struct, frozen=True):
    """A PNG written for one widget."""

    dashboard: str
    title: str
    file: str
    has_data: bool


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def _metric_curve(line: MetricLine, period: int, recorded: RecordedMetrics) -> Curve:
    used = line.period or period
    periods = aggregate(recorded.samples(line.metric), used)
    points = tuple((start, p.value(line.stat)) for start, p in periods.items())
    return Curve(line.label, used, points, line.color)


def _search_curves(line: ExpressionLine, recorded: RecordedMetrics) -> list[Curve]:
    match = _SEARCH.fullmatch(line.expression.strip())
    if match is None:
        raise metric_math.MetricMathError(f"unsupported SEARCH {line.expression!r}")
    namespace, *names = (part.strip() for part in match["schema"].split(","))
    period = int(match["period"])
    # `Name="value"` terms after MetricName: the series must have exactly that value.
    filters = dict(re.findall(r'([A-Za-z]+)="([^"]*)"', match["filters"]))
    curves = []
    for key in sorted(recorded.series):
        dims = dict(key.dimensions)
        if key.namespace != namespace or key.name != match["name"] or set(dims) != set(names):
            continue
        if any(dims.get(k) != v for k, v in filters.items()):
            continue
        periods = aggregate(recorded.series[key], period)
        hidden = {"Service", *filters}
        label = " ".join(v for k, v in key.dimensions if k not in hidden) or key.describe()
        points = tuple((start, p.value(match["stat"])) for start, p in periods.items())
        curves.append(Curve(label, period, points))
    return curves


def _expression_curve(
    line: ExpressionLine, widget: MetricWidget, recorded: RecordedMetrics
) -> Curve:
    tree = metric_math.parse(line.expression)
    starts = period_starts(recorded, widget.period)
    inputs: dict[str, dict[int, float]] = {}
    for ref in metric_math.references(tree):
        source = next((m for m in widget.lines if isinstance(m, MetricLine) and m.id == ref), None)
        if source is None:
            raise metric_math.MetricMathError(f"{widget.title}: no line with id {ref}")
        inputs[ref] = dict(_metric_curve(source, widget.period, recorded).points)
    points = []
    for start in starts:
        value = metric_math.evaluate(tree, {ref: v.get(start) for ref, v in inputs.items()})
        if value is not None:
            points.append((start, value))
    return Curve(line.label, widget.period, tuple(points), line.color)


def widget_curves(widget: MetricWidget, recorded: RecordedMetrics) -> list[Curve]:
    """The visible lines of a widget, computed from the recording as CloudWatch would."""
    curves: list[Curve] = []
    for line in widget.lines:
        if isinstance(line, MetricLine):
            if line.visible:
                curves.append(_metric_curve(line, widget.period, recorded))
        elif line.expression.lstrip().startswith("SEARCH("):
            curves.extend(_search_curves(line, recorded))
        else:
            curves.append(_expression_curve(line, widget, recorded))
    return curves


def _what_is_plotted(widget: MetricWidget) -> str:
    """A subtitle: the metric(s), the dimensions they share, what differs, the period."""
    metrics = [SeriesKey.of(m.metric) for m in widget.lines if isinstance(m, MetricLine)]
    expressions = [e for e in widget.lines if isinstance(e, ExpressionLine)]
    search = next((_SEARCH.fullmatch(e.expression.strip()) for e in expressions), None)
    if search is not None:
        namespace, *names = (part.strip() for part in search["schema"].split(","))
        return (
            f"{namespace} {search['name']} ({search['stat']}), one line per "
            f"{' / '.join(n for n in names if n != 'Service')}, period {search['period']} s"
        )
    if not metrics:
        return f"period {widget.period} s"
    common = set(metrics[0].dimensions).intersection(*(set(k.dimensions) for k in metrics))
    varying = sorted({name for k in metrics for name, _ in k.dimensions} - {n for n, _ in common})
    metric_names = " / ".join(sorted({f"{k.namespace} {k.name}" for k in metrics}))
    text = metric_names
    if common:
        text += f" ({', '.join(f'{k}={v}' for k, v in sorted(common))})"
    if varying:
        text += f" by {', '.join(varying)}"
    if expressions:
        text += f"; {expressions[0].label} = {expressions[0].expression}"
    return f"{text}, period {widget.period} s"


def _time_span(
    curves: Sequence[Curve], recorded: RecordedMetrics, period: int
) -> tuple[int, int] | None:
    """Epoch seconds covered by the recording and the plotted periods, on period bounds.

    The whole recording, so that a sparse counter (a few dead letters) is seen in context
    and the periods its alarm spent in ALARM are inside the graph."""
    extents = [(c.points[0][0], c.points[-1][0] + c.period) for c in curves if c.points]
    span = recorded.time_range_ms()
    if span is not None:
        extents.append((span[0] // 1000, span[1] // 1000))
    if not extents:
        return None
    first, last = min(e[0] for e in extents), max(e[1] for e in extents)
    return first - first % period, last + (-last % period)


def _shade_alarm_periods(
    axes: Axes, widget: MetricWidget, timelines: Sequence[AlarmTimeline]
) -> None:
    by_name = {t.alarm.alarm_name: t for t in timelines}
    for threshold in widget.thresholds:
        timeline = by_name.get(threshold.alarm or "")
        if timeline is None:
            continue
        period = timeline.alarm.evaluation_period()
        label: str | None = f"{timeline.alarm.alarm_name} in ALARM"
        for evaluation in timeline.evaluations:
            if evaluation.state == "ALARM":
                # The state holds from the end of the evaluated period to the next evaluation.
                axes.axvspan(
                    _x(evaluation.start + period),
                    _x(evaluation.start + 2 * period),
                    color=STATE_COLOURS["ALARM"],
                    alpha=0.12,
                    linewidth=0,
                    label=label,
                )
                label = None


def draw_widget(
    widget: MetricWidget,
    recorded: RecordedMetrics,
    path: Path,
    timelines: Sequence[AlarmTimeline] = (),
) -> bool:
    """Write the widget's PNG; False when the recording holds none of its metrics."""
    figure = Figure(figsize=(11, 4.4), dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    curves = widget_curves(widget, recorded)
    has_data = any(c.points for c in curves)
    for curve in curves:
        if not curve.points:
            continue
        xs = [_x(start) for start, _ in curve.points]
        ys = [value for _, value in curve.points]
        if curve.period >= COARSE_PERIOD:
            # A 5-minute (or longer) statistic is one value for its whole period: a step.
            xs.append(_x(curve.points[-1][0] + curve.period))
            ys.append(ys[-1])
            axes.step(xs, ys, where="post", label=curve.label, color=curve.color, linewidth=2.2)
        else:
            axes.plot(xs, ys, marker="o", markersize=3, label=curve.label, color=curve.color)
    for threshold in widget.thresholds:
        axes.axhline(
            threshold.value,
            color=threshold.color,
            linestyle="--",
            linewidth=1.6,
            label=threshold.label,
        )
    figure.suptitle(widget.title, fontsize=13, fontweight="bold")
    axes.set_title(textwrap.fill(_what_is_plotted(widget), 140), fontsize=9, color="#555555")
    axes.set_ylabel(widget.y_label)
    axes.grid(True, alpha=0.3)
    _shade_alarm_periods(axes, widget, timelines)
    span = _time_span(curves, recorded, widget.period)
    if span is not None:
        axes.set_xlim(_x(span[0]), _x(span[1]))
        axes.set_xlabel(f"time (UTC), {utc(span[0]):%Y-%m-%d}")
    _utc_minutes_axis(axes, span)
    if has_data:
        axes.set_ylim(_y_range(widget, curves))
    elif widget.y_min is not None:
        axes.set_ylim(bottom=widget.y_min)
    if not has_data:
        axes.text(
            0.5,
            0.5,
            _no_data_note(widget),
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=11,
            color="#555555",
            wrap=True,
        )
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.savefig(path)
    return has_data


def _y_range(widget: MetricWidget, curves: Sequence[Curve]) -> tuple[float, float]:
    """Data and threshold lines in view with a margin; the widget's min/max where set."""
    values = [v for c in curves for _, v in c.points] + [t.value for t in widget.thresholds]
    low = min(values) if widget.y_min is None else min(widget.y_min, *values)
    high = max(values)
    pad = 0.12 * (high - low) or 0.1 * abs(high) or 1.0
    bottom = low - pad if widget.y_min is None else widget.y_min
    top = high + pad if widget.y_max is None else max(widget.y_max * 1.05, high)
    return bottom, top


def _utc_minutes_axis(axes: Axes, span: tuple[int, int] | None) -> None:
    """Ticks on round minutes (every 1, 5, 10, 15, 30 or 60), labelled HH:MM in UTC."""
    tz = utc(0).tzinfo
    if span is not None:
        minutes = (span[1] - span[0]) / 60
        step = next((s for s in (1, 5, 10, 15, 30) if minutes / s <= 12), 60)
        if step < 60:
            minutes_locator = dates.MinuteLocator(byminute=range(0, 60, step), tz=tz)  # type: ignore[no-untyped-call]
            axes.xaxis.set_major_locator(minutes_locator)
    axes.xaxis.set_major_formatter(dates.DateFormatter("%H:%M", tz=tz))  # type: ignore[no-untyped-call]


def _no_data_note(widget: MetricWidget) -> str:
    metrics = [m.metric for m in widget.lines if isinstance(m, MetricLine)]
    namespaces = {m.namespace for m in metrics}
    if namespaces and all(n.startswith("AWS/") for n in namespaces):
        return (
            "no data: " + ", ".join(sorted(namespaces)) + " metrics are published by AWS,\n"
            "not by the services' EMF output; see them in CloudWatch"
        )
    kinds = {spec.kind for spec in CATALOGUE if spec.name in {m.metric_name for m in metrics}}
    if kinds == {"counter"}:
        return (
            "no datapoint in the recording: this counter is exported only\n"
            "when it counts something, so no datapoint means zero"
        )
    return "no datapoint for these metrics in the recording"


def _evaluated_span(timelines: Sequence[AlarmTimeline]) -> tuple[int, int] | None:
    ends = [
        (e.start, e.start + t.alarm.evaluation_period()) for t in timelines for e in t.evaluations
    ]
    return (min(s for s, _ in ends), max(e for _, e in ends)) if ends else None


def draw_alarm_timeline(timelines: Sequence[AlarmTimeline], path: Path) -> None:
    """A colour strip per alarm: one box per evaluated period, OK / ALARM / INSUFFICIENT_DATA."""
    height = 1.2 + 0.45 * len(timelines)
    figure = Figure(figsize=(10, height), dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    for row, timeline in enumerate(reversed(timelines)):
        period = timeline.alarm.evaluation_period()
        for evaluation in timeline.evaluations:
            start = _x(evaluation.start)
            width = _x(evaluation.start + period) - start
            axes.broken_barh(
                [(start, width)],
                (row - 0.4, 0.8),
                facecolors=STATE_COLOURS[evaluation.state],
                edgecolors="white",
                linewidth=0.6,
            )
    axes.set_yticks(range(len(timelines)), [t.alarm.alarm_name for t in reversed(timelines)])
    axes.set_ylim(-0.6, len(timelines) - 0.4)
    _utc_minutes_axis(axes, _evaluated_span(timelines))
    axes.set_xlabel("time (UTC); each box is one evaluated period, coloured by the state after it")
    figure.suptitle("Alarm states over time", fontsize=13, fontweight="bold")
    axes.legend(
        handles=[Patch(color=c, label=s) for s, c in STATE_COLOURS.items()],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.35 if len(timelines) < 4 else -0.12),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    figure.savefig(path)


def render_review(
    dashboards: Sequence[Dashboard],
    timelines: Sequence[AlarmTimeline],
    recorded: RecordedMetrics,
    out: Path,
    sources: Sequence[str] = (),
) -> list[RenderedWidget]:
    """Write every metric widget's PNG, the alarm timeline PNG and `index.html` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    rendered = []
    for dashboard in dashboards:
        for widget in dashboard.metric_widgets():
            name = f"{_slug(dashboard.name)}--{_slug(widget.title)}.png"
            has_data = draw_widget(widget, recorded, out / name, timelines)
            rendered.append(RenderedWidget(dashboard.name, widget.title, name, has_data))
    draw_alarm_timeline(timelines, out / "alarm-timeline.png")
    (out / "index.html").write_text(
        _page(dashboards, rendered, timelines, recorded, sources), encoding="utf-8"
    )
    return rendered


def _page(
    dashboards: Sequence[Dashboard],
    rendered: Sequence[RenderedWidget],
    timelines: Sequence[AlarmTimeline],
    recorded: RecordedMetrics,
    sources: Sequence[str],
) -> str:
    esc = html.escape
    span = recorded.time_range_ms()
    when = (
        "no samples"
        if span is None
        else f"{utc(span[0] / 1000):%Y-%m-%d %H:%M:%S} to {utc(span[1] / 1000):%H:%M:%S} UTC"
    )
    rows = []
    for timeline in timelines:
        first = timeline.first_alarm()
        period = timeline.alarm.evaluation_period()
        state = timeline.final_state()
        rows.append(
            f"<tr><td>{esc(timeline.alarm.alarm_name)}</td>"
            f"<td class='state' style='background:{STATE_COLOURS[state]}'>{state}</td>"
            f"<td>{'never' if first is None else esc(period_label(first.start, period))}</td>"
            f"<td>{esc(describe_alarm(timeline.alarm))}</td></tr>"
        )
    sections = []
    for dashboard in dashboards:
        figures = "".join(
            f"<figure><img src='{esc(r.file)}' alt='{esc(r.title)}'>"
            f"<figcaption>{esc(r.title)}{'' if r.has_data else ' (no data recorded)'}"
            "</figcaption></figure>"
            for r in rendered
            if r.dashboard == dashboard.name
        )
        sections.append(
            f"<h2>Dashboard {esc(dashboard.name)}</h2><div class='grid'>{figures}</div>"
        )
    detail = _state_table(timelines)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>QIS metrics review: {esc(when)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }}
td.state {{ color: white; font-weight: bold; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em; }}
figure {{ margin: 0; }} figure img {{ width: 100%; border: 1px solid #ddd; }}
.strip td {{ width: 1.1em; padding: 0; height: 1.1em; }}
</style></head><body>
<h1>QIS metrics review</h1>
<p>Recording {esc(when)}: {recorded.records} EMF records, {len(recorded.series)} series
from {esc(", ".join(sources) or "the given files")}. Graphs are computed offline with
CloudWatch's statistics; alarm states with CloudWatch's evaluation rules.</p>
<h2>Alarms</h2>
<img src="alarm-timeline.png" alt="alarm states over time" style="max-width:100%">
<table><tr><th>alarm</th><th>final state</th><th>first ALARM after period (UTC)</th>
<th>definition</th></tr>
{"".join(rows)}</table>
{detail}
{"".join(sections)}
</body></html>
"""


def _state_table(timelines: Sequence[AlarmTimeline]) -> str:
    esc = html.escape
    blocks = []
    for timeline in timelines:
        period = timeline.alarm.evaluation_period()
        cells = "".join(
            f"<td title='{esc(period_label(e.start, period))}: {e.state}, value "
            f"{esc(number(e.value))}; {esc(e.reason)}' style='background:{STATE_COLOURS[e.state]}'>"
            "</td>"
            for e in timeline.evaluations
        )
        blocks.append(f"<tr><th>{esc(timeline.alarm.alarm_name)}</th>{cells}</tr>")
    return (
        "<details><summary>State per period (hover a box for time, value and reason)</summary>"
        f"<table class='strip'>{''.join(blocks)}</table></details>"
    )
