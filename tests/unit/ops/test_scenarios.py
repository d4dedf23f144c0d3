"""The synthetic healthy and injected-latency recordings, evaluated with the real alarms.

Stand-ins for the issue's "done when" runs until the service's own EMF output exists: the
same checks apply to a real recording (`qis alarms evaluate --metrics FILE`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from alarms.definitions import (
    ALARMS,
    DEAD_LETTERS,
    HIGH_INGESTION_LATENCY,
    MANAGED_SERVICE_ALARMS,
)
from alarms.evaluate import AlarmTimeline, evaluate_recording, recording_warnings
from alarms.report import format_timelines, timelines_json
from alarms.sample_metrics import (
    DEFAULT_START,
    INJECTION_MINUTE,
    SET_ASIDE_BY_MINUTE,
    synthetic_recording,
)
from ops.emf import RecordedMetrics, parse_emf
from ops.naming import base_name, environment_values, resolve


@pytest.fixture(scope="module")
def healthy() -> RecordedMetrics:
    return parse_emf(synthetic_recording("healthy", minutes=20, requests_per_minute=600))


@pytest.fixture(scope="module")
def slowed() -> RecordedMetrics:
    return parse_emf(synthetic_recording("injected-latency", minutes=25, requests_per_minute=600))


def by_name(timelines: tuple[AlarmTimeline, ...]) -> dict[str, AlarmTimeline]:
    """Timelines by the definitions' names (`qis-${Environment}-...`)."""
    return {
        a.alarm_name: t
        for t in timelines
        for a in ALARMS
        if base_name(a.alarm_name) == base_name(t.alarm.alarm_name)
    }


LOCAL_ALARMS = [a for a in ALARMS if a not in MANAGED_SERVICE_ALARMS]


def test_healthy_run_p95_is_well_under_200_ms_and_nothing_fires(healthy: RecordedMetrics) -> None:
    timelines = evaluate_recording(ALARMS, healthy)
    assert all(t.first_alarm() is None for t in timelines)
    evaluated = [t for t in timelines if t.skipped is None]
    assert [base_name(t.alarm.alarm_name) for t in evaluated] == [
        base_name(a.alarm_name) for a in LOCAL_ALARMS
    ]
    assert all(t.final_state() == "OK" for t in evaluated)
    assert all(t.alarm.alarm_name.startswith("qis-local-") for t in timelines)
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
    assert "qis-local-HighIngestionLatency" in text
    assert "period (UTC)" in text
    assert "value (Milliseconds)" in text
    assert "2025-11-27 09:15-09:20" in text
    row = next(line for line in text.splitlines() if "2025-11-27 09:15-09:20" in line)
    assert "ALARM" in row
    assert "2 of the last 2 datapoints breaching" in row


def test_the_json_report(slowed: RecordedMetrics) -> None:
    document = json.loads(timelines_json(evaluate_recording(ALARMS, slowed), slowed))
    latency = next(a for a in document["alarms"] if a["name"] == "qis-local-HighIngestionLatency")
    assert latency["final_state"] == "ALARM"
    assert latency["first_alarm_period_start"] == "2025-11-27T09:15:00+00:00"
    first = datetime.fromisoformat(latency["evaluations"][0]["period_start"])
    assert first.tzinfo == UTC
    assert {e["state"] for e in latency["evaluations"]} == {"OK", "ALARM"}


@pytest.fixture(scope="module")
def dead_letters() -> RecordedMetrics:
    return parse_emf(synthetic_recording("dead-letters", minutes=14, requests_per_minute=200))


def test_set_asides_in_the_services_emf_fire_the_dead_letter_alarm_in_their_minute(
    dead_letters: RecordedMetrics,
) -> None:
    timelines = by_name(evaluate_recording(ALARMS, dead_letters))
    evaluations = timelines[DEAD_LETTERS.alarm_name].evaluations
    # A minute's counts are exported when it ends, so they land in the next 1-minute period.
    first = int(DEFAULT_START.timestamp()) // 60 * 60
    expected = {
        first + (minute + 1) * 60: float(sum(count for _, _, count in set_aside))
        for minute, set_aside in SET_ASIDE_BY_MINUTE.items()
    }
    assert expected == {first + 5 * 60: 1.0, first + 10 * 60: 3.0}
    assert {e.start: e.value for e in evaluations if e.state == "ALARM"} == expected
    quiet = [e for e in evaluations if e.start not in expected]
    assert len(quiet) == len(evaluations) - 2
    assert all(e.state == "OK" and e.value == 0.0 for e in quiet)
    local = resolve(DEAD_LETTERS, environment_values("local"))
    assert recording_warnings(local, dead_letters) == []
    others = [t for name, t in timelines.items() if name != DEAD_LETTERS.alarm_name]
    assert all(t.first_alarm() is None for t in others)


def test_dead_letters_without_a_stage_match_nothing_and_are_named() -> None:
    line = {
        "_aws": {
            "Timestamp": int(DEFAULT_START.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": "Custom/QIS",
                    "Metrics": [{"Name": "DeadLetterCount", "Unit": "Count"}],
                    "Dimensions": [["Service"]],
                }
            ],
        },
        "DeadLetterCount": 5,
        "Service": "worker",
    }
    recorded = parse_emf([json.dumps(line)])
    (timeline,) = evaluate_recording([DEAD_LETTERS], recorded)
    assert [(e.state, e.value) for e in timeline.evaluations] == [("OK", 0.0)]
    notes = recording_warnings(resolve(DEAD_LETTERS, environment_values("local")), recorded)
    assert notes == [
        "DeadLetterCount{Environment=local,Service=scheduler,Stage=audit-relay} "
        "(and 6 more series) not recorded; near matches: DeadLetterCount{Service=worker}"
    ]
