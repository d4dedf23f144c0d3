"""EventBridgeSink against an in-memory PutEvents: calls, order, retries, refusals.

The fake answers like PutEvents (one result per entry, `ErrorCode` on a failed one) and
records every call; the real service (moto) is exercised in
tests/integration/test_eventbridge.py.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import given, settings
from hypothesis import strategies as st

from app.adapters.eventbridge import (
    DETAIL_TYPES,
    MAX_ENTRIES_PER_CALL,
    Entry,
    EventBridgeSink,
    entry_size,
    eventbridge_sink,
    plan_calls,
    plan_waves,
)
from app.domain.events import OfficialValuePublished, QualityAlertRaised, ReconciliationFailed
from app.ports import EventSink, SinkUnavailable
from app.settings import EventBridgeSettings, SettingsError, load_settings
from tests.sink_events import TRACE_ID, Outbox, interleaved, official

BUS = "unit-bus"

# What the fake answers for an entry: None (taken) or an error code.
Answer = Callable[[dict[str, Any]], str | None]


def event_id(request: dict[str, Any]) -> str:
    return str(json.loads(request["Detail"])["event_id"])


class FakeEvents:
    """PutEvents in memory: `answers[event_id]` lists the codes of successive attempts of
    that entry (then it is taken); `error` makes every call raise it."""

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = defaultdict(list, answers or {})
        self.calls: list[list[dict[str, Any]]] = []
        self.taken: list[dict[str, Any]] = []
        self.error: Exception | None = None

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        if self.error is not None:
            raise self.error
        assert len(Entries) <= 10
        self.calls.append(list(Entries))
        results: list[dict[str, Any]] = []
        for request in Entries:
            codes = self.answers[event_id(request)]
            if codes:
                code = codes.pop(0)
                results.append({"ErrorCode": code, "ErrorMessage": f"{code} for the test"})
            else:
                self.taken.append(request)
                results.append({"EventId": f"eb-{len(self.taken)}"})
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


class Sleeps:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def sink(client: FakeEvents, sleeps: Sleeps | None = None, **options: Any) -> EventBridgeSink:
    return EventBridgeSink(client, bus_name=BUS, sleep=sleeps or Sleeps(), **options)


def versions_by_series(requests: list[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """Per series, (detail type, version) of each request in the order they were taken."""
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for request in requests:
        detail = json.loads(request["Detail"])
        out[detail["reference_data_id"]].append((request["DetailType"], detail.get("version", 0)))
    return dict(out)


def test_the_sink_is_an_event_sink_named_eventbridge() -> None:
    bridge = sink(FakeEvents(), batch_size=50)
    assert isinstance(bridge, EventSink)
    assert (bridge.name, bridge.batch_size) == ("eventbridge", 50)


def test_each_entry_carries_source_detail_type_detail_time_bus_and_trace_header() -> None:
    outbox = Outbox()
    published, alert = outbox.versions([official("EURUSD", 2, 0.5)])
    failed = outbox.failure("EURUSD")
    bridge = sink(FakeEvents(), source="qis.test")

    for event, detail_type, time in (
        (published, "Official Value Published", published.event.recorded_at),  # type: ignore[union-attr]
        (alert, "Quality Alert Raised", alert.event.recorded_at),  # type: ignore[union-attr]
        (failed, "Reconciliation Failed", failed.event.failed_at),  # type: ignore[union-attr]
    ):
        entry = bridge.entry(event)
        assert entry.request == {
            "Source": "qis.test",
            "DetailType": detail_type,
            "Detail": event.payload.decode(),
            "EventBusName": BUS,
            "Time": time,
            "TraceHeader": TRACE_ID,
        }
        assert (entry.event_id, entry.key) == (event.event_id, "EURUSD")
        # PutEvents' size: 14 for Time plus the UTF-8 bytes of Source, DetailType, Detail.
        assert entry.size == 14 + len("qis.test") + len(detail_type) + len(event.payload)
        assert json.loads(entry.request["Detail"])["event_id"] == event.event_id


def test_an_untraced_event_has_no_trace_header() -> None:
    (event,) = Outbox(traced=False).versions([official("EURUSD", 1, 0.99)])
    assert "TraceHeader" not in sink(FakeEvents()).entry(event).request


def test_detail_types_are_fixed_per_event_type() -> None:
    assert {
        OfficialValuePublished: "Official Value Published",
        QualityAlertRaised: "Quality Alert Raised",
        ReconciliationFailed: "Reconciliation Failed",
    } == DETAIL_TYPES


def test_entry_size_counts_as_put_events_does() -> None:
    request = {"Source": "s", "DetailType": "dt", "Detail": '{"a":"é"}', "Resources": ["r1"]}
    assert entry_size(request) == 1 + 2 + 10 + 2
    assert entry_size({**request, "Time": object()}) == 15 + 14


async def test_calls_carry_at_most_ten_entries_and_one_per_series() -> None:
    outbox = Outbox()
    series = [f"S{i:02d}" for i in range(13)]
    # Suspect versions emit an alert with the same series key right after them.
    events = outbox.versions(list(interleaved(series, versions=3, score=0.9)))
    client = FakeEvents()

    refused = await sink(client).deliver(events)

    assert refused == 0
    assert sorted(event_id(r) for r in client.taken) == sorted(e.event_id for e in events)
    assert len(client.taken) == len(events) == 13 * 3 * 2
    for call in client.calls:
        assert len(call) <= MAX_ENTRIES_PER_CALL
        keys = [json.loads(r["Detail"])["reference_data_id"] for r in call]
        assert len(keys) == len(set(keys))
    # Every series in outbox order: v1 published, v1 alert, v2 published, ...
    expected = [
        (kind, v)
        for v in (1, 2, 3)
        for kind in ("Official Value Published", "Quality Alert Raised")
    ]
    assert versions_by_series(client.taken) == dict.fromkeys(series, expected)
    # 78 entries need at least 8 calls of 10, each series' 6 entries at least 6 calls.
    assert len(client.calls) == 8


async def test_only_the_failed_entries_are_retried_with_bounded_backoff() -> None:
    outbox = Outbox()
    events = outbox.versions([official(f"S{i}", 1, 0.99) for i in range(5)])
    flaky = events[2].event_id
    client = FakeEvents({flaky: ["InternalFailure", "ThrottlingException"]})
    sleeps = Sleeps()

    refused = await sink(client, sleeps, retry_initial_seconds=0.2, retry_max_seconds=0.3).deliver(
        events
    )

    assert refused == 0
    assert [len(call) for call in client.calls] == [5, 1, 1]
    assert [event_id(r) for r in client.calls[1]] == [flaky]
    assert [event_id(r) for r in client.calls[2]] == [flaky]
    assert sorted(event_id(r) for r in client.taken) == sorted(e.event_id for e in events)
    assert len(sleeps.seconds) == 2
    assert 0.1 <= sleeps.seconds[0] <= 0.2  # half of the first ceiling, plus jitter up to it
    assert 0.15 <= sleeps.seconds[1] <= 0.3  # doubled, capped at retry_max_seconds


async def test_a_failed_entry_is_in_before_any_later_event_of_its_series_is_sent() -> None:
    outbox = Outbox()
    events = outbox.versions(list(interleaved(["A", "B"], versions=3)))
    a1 = next(e for e in events if e.key == "A").event_id
    client = FakeEvents({a1: ["InternalFailure", "InternalFailure", "ThrottlingException"]})

    assert await sink(client).deliver(events) == 0

    assert versions_by_series(client.taken)["A"] == [
        ("Official Value Published", v) for v in (1, 2, 3)
    ]
    a2 = events[2].event_id
    assert (events[2].key, events[2].event.version) == ("A", 2)  # type: ignore[union-attr]
    first_a2 = next(i for i, call in enumerate(client.calls) for r in call if event_id(r) == a2)
    a1_taken = max(i for i, call in enumerate(client.calls) for r in call if event_id(r) == a1)
    assert a1_taken < first_a2


async def test_still_failing_entries_end_in_sink_unavailable_after_the_attempts() -> None:
    outbox = Outbox()
    events = outbox.versions([official("A", 1, 0.99), official("B", 1, 0.99)])
    client = FakeEvents({events[1].event_id: ["ThrottlingException"] * 10})
    sleeps = Sleeps()

    with pytest.raises(SinkUnavailable, match="1 entries still failing after 3 attempts") as raised:
        await sink(client, sleeps, entry_attempts=3, retry_max_seconds=1.0).deliver(events)

    assert events[1].event_id in str(raised.value)
    assert "ThrottlingException" in str(raised.value)
    assert [len(call) for call in client.calls] == [2, 1, 1]
    assert len(sleeps.seconds) == 2
    assert all(0 < s <= 1.0 for s in sleeps.seconds)


async def test_permission_errors_are_unavailable_not_refused() -> None:
    # A role without events:PutEvents on the bus must stop the sink, not drop its events.
    (event,) = Outbox().versions([official("A", 1, 0.99)])
    client = FakeEvents({event.event_id: ["AccessDeniedException"] * 5})
    with pytest.raises(SinkUnavailable, match="AccessDeniedException"):
        await sink(client, entry_attempts=2).deliver([event])


async def test_entries_refused_for_what_they_are_are_logged_counted_and_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = Outbox()
    events = outbox.versions([official(f"S{i}", 1, 0.99) for i in range(4)])
    big = outbox.failure("S9", error="x" * 300_000)
    malformed, invalid = events[1].event_id, events[2].event_id
    client = FakeEvents({malformed: ["MalformedDetail"], invalid: ["InvalidArgument"]})

    refused = await sink(client).deliver([*events, big])

    assert refused == 3
    sent = [event_id(r) for call in client.calls for r in call]
    assert big.event_id not in sent  # too large: never sent
    assert sent.count(malformed) == sent.count(invalid) == 1  # not retried
    assert [event_id(r) for r in client.taken] == [events[0].event_id, events[3].event_id]
    logged = {r.event_id: r.error for r in caplog.records if hasattr(r, "event_id")}  # type: ignore[attr-defined]
    assert set(logged) == {big.event_id, malformed, invalid}
    assert logged[big.event_id].startswith("EntryTooLarge")
    assert logged[malformed].startswith("MalformedDetail")


async def test_a_refused_entry_does_not_hold_back_its_series() -> None:
    outbox = Outbox()
    events = outbox.versions([official("A", 1, 0.99), official("A", 2, 0.99)])
    client = FakeEvents({events[0].event_id: ["MalformedDetail"]})
    assert await sink(client).deliver(events) == 1
    assert [event_id(r) for r in client.taken] == [events[1].event_id]


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ClientError({"Error": {"Code": "ThrottlingException"}}, "PutEvents"),
        ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "PutEvents"),
        ClientError(
            {"Error": {"Code": "InternalException"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
            "PutEvents",
        ),
    ],
)
async def test_a_failed_call_is_sink_unavailable(error: Exception) -> None:
    client = FakeEvents()
    client.error = error
    with pytest.raises(SinkUnavailable, match="PutEvents failed"):
        await sink(client).deliver(Outbox().versions([official("A", 1, 0.99)]))


async def test_nothing_to_deliver_makes_no_call() -> None:
    client = FakeEvents()
    assert await sink(client).deliver([]) == 0
    assert client.calls == []


def entries(keys: list[str], sizes: list[int]) -> list[Entry]:
    return [
        Entry(f"e{i}", key, size, {}) for i, (key, size) in enumerate(zip(keys, sizes, strict=True))
    ]


def test_plan_calls_respects_the_byte_limit_of_a_call() -> None:
    calls = plan_calls(entries(["A", "B", "C", "D"], [60, 50, 40, 10]), max_bytes=100)
    assert [[e.event_id for e in call] for call in calls] == [["e0", "e2"], ["e1", "e3"]]
    with pytest.raises(ValueError, match="larger than 100 bytes"):
        plan_calls(entries(["A"], [101]), max_bytes=100)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("ABCDEFGHIJKLMNOP"), st.integers(min_value=1, max_value=100)),
        max_size=80,
    )
)
def test_plan_calls_keeps_every_series_in_order(items: list[tuple[str, int]]) -> None:
    given_entries = entries([k for k, _ in items], [s for _, s in items])
    calls = plan_calls(given_entries, max_bytes=250)

    flat = [e for call in calls for e in call]
    assert sorted(e.event_id for e in flat) == sorted(e.event_id for e in given_entries)
    for call in calls:
        assert 1 <= len(call) <= MAX_ENTRIES_PER_CALL
        assert sum(e.size for e in call) <= 250
        assert len({e.key for e in call}) == len(call)
    for key in {e.key for e in given_entries}:
        assert [e for e in flat if e.key == key] == [e for e in given_entries if e.key == key]


def test_plan_waves_groups_calls_that_share_no_series_up_to_the_width() -> None:
    a1, b1, a2, c1, d1, e1 = entries(["A", "B", "A", "C", "D", "E"], [1] * 6)
    calls = [[a1, b1], [c1], [a2], [d1], [e1]]
    waves = plan_waves(calls, width=2)
    assert [[[e.event_id for e in call] for call in wave] for wave in waves] == [
        [["e0", "e1"], ["e3"]],  # A, B then C: no series shared
        [["e2"], ["e4"]],  # A again: a new wave, after the first ended
        [["e5"]],  # the width
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from("ABCDEFGH"), max_size=60),
    st.integers(min_value=1, max_value=6),
)
def test_waves_keep_every_series_in_order(keys: list[str], width: int) -> None:
    given_entries = entries(keys, [1] * len(keys))
    waves = plan_waves(plan_calls(given_entries, max_bytes=250), width)
    for wave in waves:
        assert 1 <= len(wave) <= width
        series = [e.key for call in wave for e in call]
        assert len(series) == len(set(series))
    flat = [e for wave in waves for call in wave for e in call]
    for key in set(keys):
        assert [e for e in flat if e.key == key] == [e for e in given_entries if e.key == key]


def test_the_factory_is_none_when_switched_off_and_configured_when_on() -> None:
    assert eventbridge_sink(EventBridgeSettings()) is None
    settings_ = EventBridgeSettings(
        enabled=True,
        bus_name="qis-staging-events",
        source="qis.test",
        region="eu-west-2",
        endpoint_url="",
        batch_size=40,
        entry_attempts=2,
    )
    bridge = eventbridge_sink(settings_)
    assert bridge is not None
    assert (bridge.bus_name, bridge.source, bridge.batch_size, bridge.entry_attempts) == (
        "qis-staging-events",
        "qis.test",
        40,
        2,
    )
    assert bridge.client.meta.region_name == "eu-west-2"
    assert bridge.client.meta.endpoint_url == "https://events.eu-west-2.amazonaws.com"


def test_settings_come_from_qis_eventbridge_variables() -> None:
    loaded = load_settings(
        {
            "QIS_EVENTBRIDGE__ENABLED": "true",
            "QIS_EVENTBRIDGE__BUS_NAME": "b",
            "QIS_EVENTBRIDGE__LOW_QUALITY_SCORE": "0.5",
        }
    ).eventbridge
    assert (loaded.enabled, loaded.bus_name, loaded.low_quality_score) == (True, "b", 0.5)
    assert load_settings({}).eventbridge.enabled is False
    with pytest.raises(SettingsError, match="QIS_EVENTBRIDGE__BATCH_SIZE"):
        load_settings({"QIS_EVENTBRIDGE__BATCH_SIZE": "0"})
    with pytest.raises(SettingsError, match="RETRY_INITIAL_SECONDS"):
        load_settings({"QIS_EVENTBRIDGE__RETRY_INITIAL_SECONDS": "9"})


def test_an_empty_region_is_the_sdk_s(monkeypatch: pytest.MonkeyPatch) -> None:
    # EKS pods carry AWS_REGION; the chart leaves QIS_EVENTBRIDGE__REGION empty.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    bridge = eventbridge_sink(EventBridgeSettings(enabled=True, region="", endpoint_url=""))
    assert bridge is not None
    assert bridge.client.meta.region_name == "ap-northeast-1"
