"""Offline rendering through `qis dashboards render`: a PNG per metric widget, a page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alarms.definitions import ALARMS, DEAD_LETTERS_WIDGET
from alarms.sample_metrics import synthetic_recording
from dashboards.cli import main
from dashboards.definitions import DASHBOARDS
from dashboards.render import _time_span, _what_is_plotted, widget_curves
from ops.emf import parse_emf
from ops.naming import environment_values, resolve

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_metric_widget_becomes_a_png_listed_on_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "slow.emf.jsonl"
    lines = synthetic_recording("injected-latency", minutes=12, requests_per_minute=300)
    recording.write_text("".join(f"{line}\n" for line in lines))
    out = tmp_path / "review"
    assert main(["dashboards", "render", "--metrics", str(recording), "--out", str(out)]) == 0
    widgets = [w for d in DASHBOARDS for w in d.metric_widgets()]
    assert f"wrote {len(widgets)} graphs" in capsys.readouterr().out

    page = (out / "index.html").read_text()
    images = re.findall(r"<img src='([^']+)' alt='([^']+)'>", page)
    assert [title for _, title in images] == [w.title for w in widgets]
    for file, _ in images:
        assert (out / file).read_bytes().startswith(PNG)
    assert (out / "alarm-timeline.png").read_bytes().startswith(PNG)
    for alarm in ALARMS:  # the recording's environment: local
        assert alarm.alarm_name.replace("${Environment}", "local") in page
    without_data = set(re.findall(r"<figcaption>([^<]+) \(no data recorded\)", page))
    assert "Load balancer: requests" in without_data  # AWS/* metrics are not in EMF
    assert DEAD_LETTERS_WIDGET in without_data  # counters that never counted
    assert not any("Ingestion latency" in title for title in without_data)


def test_a_sparse_counter_is_drawn_over_the_whole_recording() -> None:
    recorded = parse_emf(synthetic_recording("dead-letters", minutes=14, requests_per_minute=50))
    (widget,) = [
        resolve(w, environment_values("local"))
        for d in DASHBOARDS
        for w in d.metric_widgets()
        if w.title == DEAD_LETTERS_WIDGET
    ]
    curves = widget_curves(widget, recorded)
    drawn = [c for c in curves if c.points]
    assert [c.label for c in drawn] == ["decode", "reconcile", "window"]
    first, last = (t // 1000 for t in recorded.time_range_ms() or (0, 0))
    span = _time_span(curves, recorded, widget.period)
    assert span == (first - first % 60, last + (-last % 60))
    assert span[1] - span[0] == 14 * 60  # not just the two minutes with dead letters
    assert _what_is_plotted(widget) == (
        "Custom/QIS DeadLetterCount (Environment=local) by Service, Stage, period 60 s"
    )


def test_the_quality_search_draws_only_the_environments_series() -> None:
    recorded = parse_emf(synthetic_recording("healthy", minutes=12, requests_per_minute=50))
    (widget,) = [
        w for d in DASHBOARDS for w in d.metric_widgets() if w.title == "Quality score by series"
    ]
    local = list(widget_curves(resolve(widget, environment_values("local")), recorded))
    assert local
    assert all(c.points for c in local)
    assert "local" not in " ".join(c.label for c in local)  # the filter is not a label
    assert widget_curves(resolve(widget, environment_values("prod")), recorded) == []
