from __future__ import annotations

import uuid
from datetime import timedelta, timezone

import msgspec
import pytest

from app.domain.events import (
    DomainEvent,
    OfficialValuePublished,
    QualityAlertRaised,
    decode_event,
    derive_event_id,
    encode_event,
    events_for_version,
    official_value_published,
    quality_alert_raised,
    reconciliation_failed,
)
from app.domain.quality import Quality
from app.domain.series import QualityPolicy
from app.domain.versions import OfficialValue

from .builders import SERIES, SNAP

RECORDED = SNAP + timedelta(seconds=3)
OFFICIAL = OfficialValue(
    reference_data_id=SERIES,
    snap=SNAP,
    version=2,
    value=100.005,
    status="suspect",
    method="median",
    sources_used=("A", "B"),
    sources_excluded=(),
    quality=Quality(score=0.6667, completeness=1, timeliness=1, consistency=0.6667, validity=1),
    supersedes=1,
    recorded_at=RECORDED,
)


def all_events() -> list[DomainEvent]:
    return [
        official_value_published(OFFICIAL, ["a1", "b1"]),
        quality_alert_raised(OFFICIAL, QualityPolicy()),
        reconciliation_failed(SERIES, SNAP, stage="window", error="E", failed_at=RECORDED),
    ]


def test_every_event_round_trips_through_its_tagged_json() -> None:
    for event in all_events():
        assert decode_event(encode_event(event)) == event


def test_the_type_tag_names_the_event_in_the_past_tense() -> None:
    tags = [msgspec.json.decode(encode_event(e))["type"] for e in all_events()]

    assert tags == [
        "official_value_published",
        "quality_alert_raised",
        "reconciliation_failed",
    ]


def test_every_event_carries_schema_version_1() -> None:
    assert {e.schema_version for e in all_events()} == {1}


def test_an_unknown_type_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'value_deleted'"):
        decode_event(b'{"type": "value_deleted", "event_id": "x"}')


def test_published_event_carries_the_version_and_its_lineage() -> None:
    event = official_value_published(OFFICIAL, ("a1", "b1"))

    assert isinstance(event, OfficialValuePublished)
    assert (event.version, event.supersedes, event.value) == (2, 1, 100.005)
    assert event.observation_ids == ("a1", "b1")
    assert event.recorded_at == RECORDED


def test_event_ids_are_stable_across_builds_and_time_zones() -> None:
    paris = timezone(timedelta(hours=1))
    moved = msgspec.structs.replace(OFFICIAL, snap=SNAP.astimezone(paris), recorded_at=SNAP)

    assert official_value_published(OFFICIAL, []).event_id == (
        official_value_published(moved, ["other"]).event_id
    )
    # Pinned: changing the derivation would break consumers' deduplication.
    assert official_value_published(OFFICIAL, []).event_id == derive_event_id(
        "official_value_published", SERIES, 1768485600000000, 2
    )
    namespace = uuid.UUID("552ef97f-d346-4f66-9d77-52ecd7bcc268")
    assert derive_event_id("k", "a", 1) == str(uuid.uuid5(namespace, '["k","a",1]'))
    assert derive_event_id("k", "é€", -7) == str(uuid.uuid5(namespace, '["k","é€",-7]'))
    for n in range(200):  # every value of the version and variant bytes' other bits
        name = msgspec.json.encode(["kind", f"S-{n}", n]).decode()
        assert derive_event_id("kind", f"S-{n}", n) == str(uuid.uuid5(namespace, name))


def test_event_ids_differ_per_kind_version_and_series() -> None:
    ids = {
        official_value_published(OFFICIAL, []).event_id,
        official_value_published(msgspec.structs.replace(OFFICIAL, version=3), []).event_id,
        official_value_published(
            msgspec.structs.replace(OFFICIAL, reference_data_id="BTC-USD"), []
        ).event_id,
        quality_alert_raised(OFFICIAL, QualityPolicy()).event_id,
    }

    assert len(ids) == 4


def test_reconciliation_failed_id_names_the_snap_the_stage_and_the_error() -> None:
    one = reconciliation_failed(SERIES, SNAP, stage="window", error="E", failed_at=SNAP)
    later = reconciliation_failed(SERIES, SNAP, stage="window", error="E", failed_at=RECORDED)
    other = reconciliation_failed(SERIES, SNAP, stage="reconcile", error="E", failed_at=SNAP)

    assert one.event_id == later.event_id  # the same failure, recorded twice: one id
    assert one.event_id != other.event_id


def test_a_suspect_version_also_raises_a_quality_alert() -> None:
    events = events_for_version(OFFICIAL, ["a1"], QualityPolicy(threshold=0.9))

    assert [type(e) for e in events] == [OfficialValuePublished, QualityAlertRaised]
    alert = events[1]
    assert isinstance(alert, QualityAlertRaised)
    assert (alert.threshold, alert.quality.score, alert.version) == (0.9, 0.6667, 2)


def test_an_official_version_raises_no_alert() -> None:
    official = msgspec.structs.replace(OFFICIAL, status="official")

    assert [type(e) for e in events_for_version(official, [], QualityPolicy())] == [
        OfficialValuePublished
    ]
