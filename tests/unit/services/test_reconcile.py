"""The reconciliation stage and window closing against in-memory ports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.audit import verify_chain
from app.domain.events import decode_event, derive_event_id
from app.domain.observation import Observation
from app.domain.series import Series, SeriesConfig
from app.services.journal import Topics
from app.services.reconcile import close_due_windows, reconcile_snaps, reconciliation_stage
from tests.unit.services.fakes import FakeDatabase, FakeStore, payload

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
TOPICS = Topics(official_values="ov", quality_alerts="alerts", audit="audit")
ABC = SeriesConfig(expected_sources=("a", "b", "c"), window_seconds=60)


def obs(
    source: str,
    value: float,
    *,
    series: str = "ETH-USD",
    snap: datetime = SNAP,
    observed_after: float = 0.0,
    received_after: float = 1.0,
) -> Observation:
    return Observation(
        observation_id=f"{series}:{source}:{snap.isoformat()}:{observed_after}:{value!r}",
        reference_data_id=series,
        source=source,
        snap=snap,
        value=value,
        observed_at=snap + timedelta(seconds=observed_after),
        received_at=snap + timedelta(seconds=received_after),
    )


def configure(db: FakeDatabase, config: SeriesConfig, series: str = "ETH-USD") -> None:
    db.state.series[series] = Series(
        reference_data_id=series, config=config, updated_at=db.state.now
    )


async def deliver(db: FakeDatabase, *observations: Observation) -> None:
    """What the worker does with a batch: store, then run the stage in the same transaction."""
    stage = reconciliation_stage(lambda store: store, topics=TOPICS)
    async with db.transaction() as store:
        new = db.store_observations(observations)
        await stage(store, new)


async def test_three_agreeing_sources_publish_version_1_with_the_median() -> None:
    db = FakeDatabase()
    configure(db, ABC)

    await deliver(db, obs("a", 100.00), obs("b", 100.02), obs("c", 99.99))

    (v1,) = db.versions("ETH-USD", SNAP)
    assert (v1.version, v1.value, v1.status, v1.supersedes) == (1, 100.0, "official", None)
    assert v1.quality.score == 1.0
    assert v1.recorded_at == db.state.now
    assert db.state.snaps[("ETH-USD", SNAP)].state == "published"
    assert db.state.snaps[("ETH-USD", SNAP)].latest_version == 1
    (event,) = db.messages("ov")
    decoded = payload(event)
    assert decoded["type"] == "official_value_published"
    assert decoded["version"] == 1
    assert decoded["value"] == 100.0
    assert event.key == "ETH-USD"
    assert event.event_id == derive_event_id(
        "official_value_published", "ETH-USD", 1768485600000000, 1
    )
    assert db.messages("alerts") == []
    assert db.actions() == ["observations.accepted", "official_value.created"]


async def test_audit_records_are_chained_and_list_the_accepted_observations() -> None:
    db = FakeDatabase()
    configure(db, ABC)

    await deliver(db, obs("a", 100.00), obs("b", 100.02), obs("c", 99.99))

    assert verify_chain(db.state.audit) is None
    assert [r.seq for r in db.state.audit] == [1, 2]
    assert db.messages("audit") == []  # the relay follows the trail itself
    accepted = db.state.audit[0]
    assert accepted.entity_id == "ETH-USD"
    assert accepted.after is not None
    assert accepted.after["count"] == 3
    assert len(accepted.after["observation_ids"]) == 3


async def test_missing_expected_source_waits_while_the_window_is_open() -> None:
    db = FakeDatabase()
    configure(db, ABC)

    await deliver(db, obs("a", 100.00), obs("b", 100.02))

    assert db.versions("ETH-USD", SNAP) == []
    state = db.state.snaps[("ETH-USD", SNAP)]
    assert (state.state, state.window_closes_at) == ("open", SNAP + timedelta(seconds=60))
    assert db.messages("ov") == []
    assert db.actions() == ["observations.accepted"]


async def test_window_closing_publishes_what_arrived_as_suspect_with_an_alert() -> None:
    db = FakeDatabase()
    configure(db, ABC)
    await deliver(db, obs("a", 100.00), obs("b", 100.02))
    db.advance(120)

    outcomes = await close_due_windows(db, topics=TOPICS)

    assert [(o.reason, o.version, o.state) for o in outcomes] == [("first_version", 1, "published")]
    (v1,) = db.versions("ETH-USD", SNAP)
    assert (v1.value, v1.status, v1.quality.completeness, v1.quality.score) == (
        100.01,
        "suspect",
        0.6667,
        0.6667,
    )
    (alert,) = db.messages("alerts")
    assert payload(alert)["type"] == "quality_alert_raised"
    assert payload(alert)["threshold"] == 0.95
    assert db.actions()[-2:] == ["official_value.created", "quality_alert.raised"]
    assert db.state.audit[-1].actor == "scheduler"
    assert await close_due_windows(db, topics=TOPICS) == []  # nothing left open


async def test_window_closing_without_enough_sources_records_insufficient_once() -> None:
    db = FakeDatabase()
    configure(db, SeriesConfig(expected_sources=("a", "b", "c"), min_sources=2))
    await deliver(db, obs("a", 100.00))
    db.advance(120)

    (outcome,) = await close_due_windows(db, topics=TOPICS)

    assert (outcome.reason, outcome.version, outcome.state) == (
        "insufficient",
        None,
        "insufficient",
    )
    assert db.versions("ETH-USD", SNAP) == []
    assert db.actions() == ["observations.accepted", "snap.insufficient"]
    insufficient = db.state.audit[-1]
    assert insufficient.entity_id == "ETH-USD/2026-01-15T14:00:00Z"
    assert insufficient.after is not None
    assert insufficient.after["sources_used"] == ["a"]
    # A late source that still leaves it insufficient is not audited as a new transition.
    await deliver(db, obs("d", 0.0, received_after=130))
    assert db.actions().count("snap.insufficient") == 1


async def test_correction_after_publication_creates_version_2_and_keeps_version_1() -> None:
    db = FakeDatabase()
    configure(db, ABC)
    await deliver(db, obs("a", 100.00), obs("b", 100.02), obs("c", 99.99))
    (v1,) = db.versions("ETH-USD", SNAP)
    db.advance(3)

    await deliver(db, obs("c", 100.04, observed_after=2, received_after=4))

    first, second = db.versions("ETH-USD", SNAP)
    assert first == v1
    assert (second.version, second.supersedes, second.value) == (2, 1, 100.02)
    assert second.recorded_at > first.recorded_at
    created = [r for r in db.state.audit if r.action == "official_value.created"][-1]
    assert created.before is not None
    assert created.before["version"] == 1
    assert created.after is not None
    assert created.after["changes"] == ["value"]
    assert [payload(m)["version"] for m in db.messages("ov")] == [1, 2]


async def test_an_observation_that_changes_nothing_creates_no_version() -> None:
    db = FakeDatabase()
    configure(db, ABC)
    await deliver(db, obs("a", 100.00), obs("b", 100.02), obs("c", 99.99))

    # The same value again, observed later: a new observation, the same official value.
    await deliver(db, obs("b", 100.02, observed_after=1, received_after=2))

    assert len(db.versions("ETH-USD", SNAP)) == 1
    assert len(db.messages("ov")) == 1


async def test_a_redelivered_batch_has_no_effect() -> None:
    db = FakeDatabase()
    configure(db, ABC)
    batch = (obs("a", 100.00), obs("b", 100.02), obs("c", 99.99))
    await deliver(db, *batch)
    audit_before = len(db.state.audit)

    await deliver(db, *batch)

    assert len(db.versions("ETH-USD", SNAP)) == 1
    assert len(db.state.audit) == audit_before


async def test_outlier_is_excluded_with_its_reason() -> None:
    db = FakeDatabase()
    configure(db, ABC)

    await deliver(db, obs("a", 100.0), obs("b", 100.01), obs("c", 103.0))

    (v1,) = db.versions("ETH-USD", SNAP)
    assert v1.value == 100.005
    assert [(e.source, e.reason) for e in v1.sources_excluded] == [("c", "outlier")]
    assert v1.status == "suspect"
    assert len(db.messages("alerts")) == 1


async def test_unknown_series_is_created_with_the_defaults_and_audited() -> None:
    db = FakeDatabase()

    await deliver(db, obs("kraken", 42.0, series="NEW-1"))

    assert db.state.series["NEW-1"].config == SeriesConfig()
    assert db.actions()[0] == "series.created"
    created = db.state.audit[0]
    assert created.after is not None
    assert created.after["config"]["window_seconds"] == 60
    # Defaults: no expected sources, one is enough: published at once.
    assert [v.value for v in db.versions("NEW-1", SNAP)] == [42.0]


async def test_previous_snap_in_the_same_batch_counts_for_spike_detection() -> None:
    db = FakeDatabase(now=SNAP + timedelta(minutes=10))
    configure(db, SeriesConfig(max_jump_pct=5.0))
    later = SNAP + timedelta(minutes=1)

    await deliver(db, obs("a", 100.0), obs("a", 110.0, snap=later))

    (first,) = db.versions("ETH-USD", SNAP)
    (second,) = db.versions("ETH-USD", later)
    assert first.quality.validity == 1.0
    assert second.quality.validity == 0.5
    assert second.status == "suspect"


async def test_series_are_locked_before_anything_is_read() -> None:
    db = FakeDatabase()
    async with db.transaction() as store:
        await reconcile_snaps(
            store, [("B", SNAP), ("A", SNAP), ("B", SNAP)], actor="test", topics=TOPICS
        )
        assert store.locked == ["A", "B"]


async def test_events_and_versions_share_the_knowledge_time() -> None:
    db = FakeDatabase()
    configure(db, SeriesConfig(expected_sources=("a", "b"), min_sources=2))

    await deliver(db, obs("a", 100.0), obs("b", 200.0))

    (v1,) = db.versions("ETH-USD", SNAP)
    event = decode_event(db.messages("ov")[0].payload)
    assert event.recorded_at == v1.recorded_at == db.state.audit[-1].at  # type: ignore[union-attr]


async def test_a_failing_write_rolls_back_everything() -> None:
    db = FakeDatabase()
    configure(db, ABC)

    class Boom(Exception):
        pass

    async def failing_enqueue(*_: object) -> None:
        raise Boom

    stage = reconciliation_stage(lambda store: store, topics=TOPICS)

    async def batch() -> None:
        async with db.transaction() as store:
            store.enqueue = failing_enqueue  # type: ignore[method-assign,assignment]
            new = db.store_observations([obs("a", 1.0), obs("b", 1.0), obs("c", 1.0)])
            await stage(store, new)

    with pytest.raises(Boom):
        await batch()

    assert db.versions("ETH-USD", SNAP) == []
    assert db.state.audit == []
    assert db.state.observations == []


def test_fake_store_is_a_pipeline_store() -> None:
    from app.ports import PipelineDatabase, PipelineStore

    db = FakeDatabase()
    assert isinstance(FakeStore(db.state), PipelineStore)
    assert isinstance(db, PipelineDatabase)


async def test_reconciling_again_without_news_writes_nothing_and_skips_the_journal() -> None:
    db = FakeDatabase()
    configure(db, ABC)
    await deliver(db, obs("a", 100.00), obs("b", 100.02), obs("c", 99.99))
    audit_before, outbox_before = len(db.state.audit), len(db.state.outbox)

    async with db.transaction() as store:
        (outcome,) = await reconcile_snaps(
            store, [("ETH-USD", SNAP)], actor="scheduler", topics=TOPICS
        )
        journal_opened = store._journal_open

    assert (outcome.reason, outcome.version, outcome.state) == ("unchanged", None, "published")
    assert journal_opened is False
    assert (len(db.state.audit), len(db.state.outbox)) == (audit_before, outbox_before)


async def test_the_audit_actor_is_who_submitted_the_snaps_observations() -> None:
    db = FakeDatabase()
    configure(db, ABC)
    configure(db, ABC, series="BTC-USD")
    eth = [obs("a", 100.00), obs("b", 100.02), obs("c", 99.99)]
    btc = [obs("a", 50.0, series="BTC-USD"), obs("b", 50.0, series="BTC-USD")]
    unknown = obs("a", 7.0, series="NEW")
    actors = {o.observation_id: "feed-eth" for o in eth}
    actors[btc[0].observation_id] = "feed-btc/alice"
    actors[btc[1].observation_id] = "feed-eth"
    stage = reconciliation_stage(lambda store: store, topics=TOPICS)
    async with db.transaction() as store:
        new = db.store_observations([*eth, *btc, unknown])
        await stage(store, new, None, actors)

    def actors_of(series: str) -> set[str]:
        return {r.actor for r in db.state.audit if r.entity_id.startswith(series)}

    assert len(db.state.audit) >= 5  # accepted x3, a version of ETH-USD, NEW created
    assert actors_of("ETH-USD") == {"feed-eth"}
    assert actors_of("BTC-USD") == {"feed-btc/alice,feed-eth"}
    assert actors_of("NEW") == {"worker"}  # a record without the header
    assert verify_chain(db.state.audit) is None
