"""The synthetic healthy and injected-latency recordings, evaluated with the real alarms.

Stand-ins for the issue's "done when" runs until the service's own EMF output exists: the
same checks apply to a real recording (`qis alarms evaluate --metrics FILE`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from alarms.definitions import ALARMS, HIGH_INGESTION_LATENCY
from alarms.sample_metrics import DEFAULT_START, INJECTION_MINUTE, synthetic_recording
from app.ops.emf import RecordedMetrics, parse_emf
from app.ops.evaluate import AlarmTimeline, evaluate_recording
from app.ops.report import format_timelines, timelines_json


@pytest.fixture(scope="module")
def healthy() -> RecordedMetrics:
    return parse_emf(synthetic_recording("healthy", minutes=20, requests_per_minute=600))


@pytest.fixture(scope="module")
def slowed() -> RecordedMetrics:
    return parse_emf(synthetic_recording("injected-latency", minutes=25, requests_per_minute=600))


def by_name(timelines: tuple[AlarmTimeline, ...]) -> dict[str, AlarmTimeline]:
    return {t.alarm.alarm_name: t for t in timelines}


def test_healthy_run_p95_is_well_under_200_ms_and_nothing_fires(healthy: RecordedMetrics) -> None:
    timelines = evaluate_recording(ALARMS, healthy)
    assert all(t.first_alarm() is None for t in timelines)
    assert all(t.final_state() == "OK" for t in timelines)
    latency = by_name(timelines)[HIGH_INGESTION_LATENCY.alarm_name]
    values = [e.value for e in latency.evaluations if e.value is not None]
    assert values
    assert max(values) < 100
    assert all((e.sample_count or 0) >= 200 for e in latency.evaluations[:-1])


def test_injected_latency_fires_after_the_second_breaching_period(slowed: RecordedMetrics) -> None:
    timelines = by_name(evaluate_recording(ALARMS, slowed))
    latency = timelines[HIGH_INGESTION_LATENCY.alarm_name].evaluations
    breaching = [e for e in latency if e.value is not None and e.value > 200]
    assert len(breaching) >= 2
    first_alarm = next(e for e in latency if e.state == "ALARM")
    assert first_alarm.start == breaching[1].start  # the second breaching period
    assert latency[latency.index(first_alarm) - 1].state == "OK"
    injected_at = DEFAULT_START.timestamp() + INJECTION_MINUTE * 60
    assert breaching[0].start <= injected_at < breaching[0].start + 300
    others = [t for name, t in timelines.items() if name != HIGH_INGESTION_LATENCY.alarm_name]
    assert all(t.first_alarm() is None for t in others)


def test_the_table_shows_utc_periods_values_and_states(slowed: RecordedMetrics) -> None:
    text = format_timelines(evaluate_recording([HIGH_INGESTION_LATENCY], slowed), slowed)
    assert "QIS-HighIngestionLatency" in text
    assert "period (UTC)" in text
    assert "value (Milliseconds)" in text
    assert "2025-11-27 09:15-09:20" in text
    row = next(line for line in text.splitlines() if "2025-11-27 09:15-09:20" in line)
    assert "ALARM" in row
    assert "2 of the last 2 datapoints breaching" in row


def test_the_json_report(slowed: RecordedMetrics) -> None:
    document = json.loads(timelines_json(evaluate_recording(ALARMS, slowed), slowed))
    latency = next(a for a in document["alarms"] if a["name"] == "QIS-HighIngestionLatency")
    assert latency["final_state"] == "ALARM"
    assert latency["first_alarm_period_start"] == "2025-11-27T09:15:00+00:00"
    first = datetime.fromisoformat(latency["evaluations"][0]["period_start"])
    assert first.tzinfo == UTC
    assert {e["state"] for e in latency["evaluations"]} == {"OK", "ALARM"}
