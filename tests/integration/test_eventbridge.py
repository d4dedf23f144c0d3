"""EventBridgeSink on the stack's moto server: a bus of its own, its two rules, an SQS
queue per rule; the test reads the queues back.

Every test makes a bus (and queues) with a unique name, so helpers sharing the moto
server never see each other's events.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

from app.adapters.eventbridge import EventBridgeSink, aws_client, detail_schemas
from app.adapters.eventbridge_routing import ensure_local_routing, rule_patterns
from app.domain.events import OfficialValuePublished, QualityAlertRaised, ReconciliationFailed
from app.entrypoints.cli import main
from app.ports import SinkEvent
from app.settings import EventBridgeSettings, Settings
from tests.sink_events import Outbox, official

pytestmark = pytest.mark.integration

# Bounds the reading of a queue: polls that may come back empty before it counts as read.
EMPTY_POLLS = 2
MAX_POLLS = 100


@pytest.fixture
def bus(settings: Settings) -> Iterator[EventBridgeSettings]:
    """Settings of a bus of this test's own on the stack's moto server, with its rules."""
    name = f"qis-it-{uuid.uuid4().hex[:12]}"
    bridge = EventBridgeSettings(
        enabled=True,
        bus_name=name,
        endpoint_url=settings.eventbridge.endpoint_url,
        region=settings.eventbridge.region,
        access_key_id=settings.eventbridge.access_key_id or "testing",
        secret_access_key=settings.eventbridge.secret_access_key or "testing",
        low_quality_score=0.8,
    )
    yield bridge
    events, sqs = aws_client("events", bridge), aws_client("sqs", bridge)
    for rule in (f"{name}-official-values", f"{name}-quality-alerts"):
        try:
            events.remove_targets(Rule=rule, EventBusName=name, Ids=["queue"])
            events.delete_rule(Name=rule, EventBusName=name)
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=rule)["QueueUrl"])
        except events.exceptions.ResourceNotFoundException:
            pass
    events.delete_event_bus(Name=name)


def read_queue(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message of the queue, in the order received (each deleted once read)."""
    bodies: list[dict[str, Any]] = []
    empty = 0
    for _ in range(MAX_POLLS):
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
        ).get("Messages", [])
        if not messages:
            empty += 1
            if empty >= EMPTY_POLLS:
                break
            continue
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def batch() -> tuple[list[SinkEvent], dict[str, SinkEvent]]:
    """Three series with three versions each, in outbox order, plus a failed snap:

    - A: always well scored (0.99): publications only.
    - B: v2 scored 0.5 under the default threshold: a suspect version and its alert.
    - C: a series whose threshold is 0.6: v2 scored 0.7 is official, yet below the bus's
      low-quality score (0.8), so the quality-alert rule takes its publication.
    """
    outbox = Outbox()
    scores = {"A": (0.99, 0.99, 0.99), "B": (0.99, 0.5, 0.99), "C": (0.99, 0.7, 0.9)}
    values = [
        official(
            series, version, scores[series][version - 1], threshold=0.6 if series == "C" else 0.95
        )
        for version in (1, 2, 3)
        for series in ("A", "B", "C")
    ]
    events = outbox.versions(values)
    events.append(outbox.failure("D"))
    return events, {e.event_id: e for e in events}


async def test_events_reach_each_rule_s_queue_in_order_per_series(
    bus: EventBridgeSettings,
) -> None:
    _, queues = ensure_local_routing(bus)
    events, by_id = batch()
    sink = EventBridgeSink.from_settings(bus)

    assert await sink.deliver(events) == 0

    sqs = aws_client("sqs", bus)
    published = read_queue(sqs, queues[f"{bus.bus_name}-official-values"])
    alerts = read_queue(sqs, queues[f"{bus.bus_name}-quality-alerts"])

    # The downstream publication rule: every publication, each once.
    expected = [e for e in events if isinstance(e.event, OfficialValuePublished)]
    assert sorted(m["detail"]["event_id"] for m in published) == sorted(
        e.event_id for e in expected
    )
    per_series: dict[str, list[int]] = defaultdict(list)
    for message in published:
        per_series[message["detail"]["reference_data_id"]].append(message["detail"]["version"])
    assert per_series == {"A": [1, 2, 3], "B": [1, 2, 3], "C": [1, 2, 3]}

    # Content: the detail is the event's JSON as on Kafka, valid against the schema of its
    # detail type (docs/events/); the envelope names the event.
    schemas = {s["title"]: Draft202012Validator(s) for s in detail_schemas().values()}
    for message in published + alerts:
        event = by_id[message["detail"]["event_id"]]
        assert message["detail"] == msgspec.json.decode(event.payload)
        assert list(schemas[message["detail-type"]].iter_errors(message["detail"])) == []
        assert message["source"] == "qis.reference-data"
        time = getattr(event.event, "recorded_at", None) or event.event.failed_at  # type: ignore[union-attr]
        assert message["time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {m["detail-type"] for m in published} == {"Official Value Published"}

    # The quality-alert rule: the alerts, the failed snap, and C's v2 (official but below
    # the bus's 0.8); not B's suspect v2 publication (its alert is there) nor any good one.
    kinds = sorted(
        (m["detail-type"], m["detail"]["reference_data_id"], m["detail"].get("version"))
        for m in alerts
    )
    assert kinds == [
        ("Official Value Published", "C", 2),
        ("Quality Alert Raised", "B", 2),
        ("Reconciliation Failed", "D", None),
    ]
    c2 = next(m for m in alerts if m["detail-type"] == "Official Value Published")
    assert c2["detail"]["quality"]["score"] == 0.7
    assert c2["detail"]["status"] == "official"
    assert isinstance(by_id[c2["detail"]["event_id"]].event, OfficialValuePublished)
    alert = next(m for m in alerts if m["detail-type"] == "Quality Alert Raised")
    assert isinstance(by_id[alert["detail"]["event_id"]].event, QualityAlertRaised)
    failed = next(m for m in alerts if m["detail-type"] == "Reconciliation Failed")
    assert isinstance(by_id[failed["detail"]["event_id"]].event, ReconciliationFailed)


async def test_a_redelivered_batch_carries_the_same_event_ids(bus: EventBridgeSettings) -> None:
    _, queues = ensure_local_routing(bus)
    events, _ = batch()
    first = [e for e in events if isinstance(e.event, OfficialValuePublished)][:4]
    sink = EventBridgeSink.from_settings(bus)

    assert await sink.deliver(first) == 0
    assert await sink.deliver(first) == 0  # the relay crashed before saving its position

    received = read_queue(aws_client("sqs", bus), queues[f"{bus.bus_name}-official-values"])
    ids = [m["detail"]["event_id"] for m in received]
    assert sorted(ids) == sorted([e.event_id for e in first] * 2)
    # A consumer deduplicating on event_id keeps each event once, with the same content.
    kept: dict[str, dict[str, Any]] = {}
    for message in received:
        assert (
            kept.setdefault(message["detail"]["event_id"], message["detail"]) == message["detail"]
        )
    assert len(kept) == 4


async def test_an_oversized_event_is_refused_and_the_rest_delivered(
    bus: EventBridgeSettings,
) -> None:
    _, queues = ensure_local_routing(bus)
    outbox = Outbox()
    events = outbox.versions([official("A", 1, 0.99), official("B", 1, 0.99)])
    huge = outbox.failure("A", error="x" * 300_000)  # over PutEvents' 256 KiB
    sink = EventBridgeSink.from_settings(bus)

    assert await sink.deliver([events[0], huge, events[1]]) == 1

    received = read_queue(aws_client("sqs", bus), queues[f"{bus.bus_name}-official-values"])
    assert sorted(m["detail"]["event_id"] for m in received) == sorted(e.event_id for e in events)
    alerts = read_queue(aws_client("sqs", bus), queues[f"{bus.bus_name}-quality-alerts"])
    assert alerts == []


async def test_a_missing_bus_is_sink_unavailable(bus: EventBridgeSettings) -> None:
    from app.ports import SinkUnavailable

    ensure_local_routing(bus)
    missing = msgspec.structs.replace(bus, bus_name=f"{bus.bus_name}-missing", call_attempts=1)
    events, _ = batch()
    with pytest.raises(SinkUnavailable, match="PutEvents failed"):
        await EventBridgeSink.from_settings(missing).deliver(events[:1])


def test_events_setup_creates_the_bus_rules_and_queues_once(
    bus: EventBridgeSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for field in ("bus_name", "endpoint_url", "region", "access_key_id", "secret_access_key"):
        monkeypatch.setenv(f"QIS_EVENTBRIDGE__{field.upper()}", str(getattr(bus, field)))
    monkeypatch.setenv("QIS_EVENTBRIDGE__LOW_QUALITY_SCORE", "0.75")
    name = bus.bus_name

    assert main(["events", "setup"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0] == f"bus\t{name}\tcreated"
    assert [line.split("\t")[1] for line in first[1:]] == [
        f"{name}-official-values",
        f"{name}-quality-alerts",
    ]
    assert main(["events", "setup"]) == 0
    again = capsys.readouterr().out.splitlines()
    assert again[0] == f"bus\t{name}\texists"
    assert again[1:] == first[1:]

    events, sqs = aws_client("events", bus), aws_client("sqs", bus)
    rules = {r["Name"]: r for r in events.list_rules(EventBusName=name)["Rules"]}
    patterns = rule_patterns("qis.reference-data", 0.75)
    assert set(rules) == {f"{name}-official-values", f"{name}-quality-alerts"}
    for rule, pattern in patterns.items():
        assert json.loads(rules[f"{name}-{rule}"]["EventPattern"]) == pattern
        (target,) = events.list_targets_by_rule(Rule=f"{name}-{rule}", EventBusName=name)["Targets"]
        url = sqs.get_queue_url(QueueName=f"{name}-{rule}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "Policy"])
        assert target["Arn"] == arn["Attributes"]["QueueArn"]
        policy = json.loads(arn["Attributes"]["Policy"])
        assert policy["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
        assert (
            policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"]
            == rules[f"{name}-{rule}"]["Arn"]
        )


def test_events_setup_refuses_without_an_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QIS_EVENTBRIDGE__ENDPOINT_URL", "")
    assert main(["events", "setup"]) == 2
    assert "events stack" in capsys.readouterr().err
