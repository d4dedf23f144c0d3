"""Which sink relays `qis scheduler` builds from its settings, and what they follow."""

from __future__ import annotations

from typing import cast

from app.adapters.postgres.pipeline import PostgresDatabase
from app.entrypoints.scheduler import build_sinks
from app.services.sinks import position_name
from app.settings import EventBridgeSettings, Settings, TimestreamSettings


def test_no_sink_is_built_by_default() -> None:
    assert build_sinks(Settings(), cast(PostgresDatabase, None), None) == []


def test_an_enabled_sink_gets_a_relay_over_the_event_topics() -> None:
    settings = Settings(timestream=TimestreamSettings(enabled=True))
    (relay,) = build_sinks(settings, cast(PostgresDatabase, None), None)
    assert relay.sink.name == "timestream"
    assert position_name(relay.sink) == "sink.timestream"
    assert relay.topics == (
        settings.kafka.official_values_topic,
        settings.kafka.quality_alerts_topic,
    )


def test_both_sinks_each_get_a_relay_of_their_own() -> None:
    settings = Settings(
        eventbridge=EventBridgeSettings(enabled=True),
        timestream=TimestreamSettings(enabled=True),
    )
    relays = build_sinks(settings, cast(PostgresDatabase, None), None)
    assert [position_name(r.sink) for r in relays] == ["sink.eventbridge", "sink.timestream"]
