"""The scheduler's rule: a snap or an event it cannot handle is set aside, the rest goes on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry import metrics

from app.domain.events import ReconciliationFailed, decode_event
from app.domain.observation import Observation
from app.domain.series import SeriesConfig
from app.ports import EventRefused, PendingMessage, SnapKey
from app.services.journal import Topics
from app.services.publish import relay_audit, relay_outbox
from app.services.reconcile import close_due_windows, reconciliation_stage
from app.telemetry.metrics import QisMetrics
from tests.unit.services.fakes import FakeDatabase, FakePublisher, FakeStore

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
TOPICS = Topics(official_values="ov", quality_alerts="alerts", audit="audit")
CONFIG = SeriesConfig(expected_sources=("a", "b", "c"), window_seconds=60)


class Counting(QisMetrics):
    def __init__(self) -> None:
        super().__init__(metrics.NoOpMeter("qis"), "scheduler")
        self.set_aside: dict[str, int] = {}
        self.failed_reconciliations = 0

    def dead_letters(self, count: int, stage: str) -> None:
        self.set_aside[stage] = self.set_aside.get(stage, 0) + count

    def reconciliation(self, succeeded: bool) -> None:
        self.failed_reconciliations += not succeeded


class Buggy(FakeDatabase):
    """Reconciling any snap of the series `BAD` raises, as a bug in the domain would."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def transaction(self):  # type: ignore[no-untyped-def]
        outer = super().transaction()
        error = self.error

        class _Ctx:
            async def __aenter__(self) -> FakeStore:
                store = await outer.__aenter__()
                real = store.observations

                async def observations(keys: Sequence[SnapKey]) -> object:
                    if any(series == "BAD" for series, _ in keys):
                        raise error
                    return await real(keys)

                store.observations = observations  # type: ignore[method-assign,assignment]
                return store

            async def __aexit__(self, *exc: object) -> bool | None:
                return await outer.__aexit__(*exc)  # type: ignore[arg-type]

        return _Ctx()


def obs(series: str, source: str, value: float) -> Observation:
    return Observation(
        observation_id=f"{series}:{source}:{value!r}",
        reference_data_id=series,
        source=source,
        snap=SNAP,
        value=value,
        observed_at=SNAP,
        received_at=SNAP + timedelta(seconds=1),
    )


async def open_snaps(db: FakeDatabase, *series: str) -> None:
    """Two of three sources for each series: open until its window closes."""
    stage = reconciliation_stage(lambda store: store, topics=TOPICS)
    for series_id in series:
        async with FakeDatabase.transaction(db) as store:
            await store.save_series(series_id, CONFIG, db.state.now)
            new = db.store_observations([obs(series_id, "a", 100.0), obs(series_id, "b", 100.02)])
            await stage(store, new, None)
    db.advance(120)


async def test_a_snap_that_fails_to_close_is_set_aside_and_the_others_close() -> None:
    db = Buggy(TypeError("can't compare offset-naive and offset-aware datetimes"))
    await open_snaps(db, "AAA", "BAD", "ZZZ")
    meter = Counting()

    outcomes = await close_due_windows(
        db, topics=TOPICS, metrics=meter, transient=lambda e: isinstance(e, OSError)
    )

    assert sorted((o.reference_data_id, o.version) for o in outcomes) == [("AAA", 1), ("ZZZ", 1)]
    assert db.state.snaps[("BAD", SNAP)].state == "failed"
    failures = [r for r in db.state.audit if r.action == "snap.reconciliation_failed"]
    assert [(r.actor, r.entity_id) for r in failures] == [("scheduler", "BAD/2026-01-15T14:00:00Z")]
    assert failures[0].after == {
        "stage": "window",
        "error": "TypeError: can't compare offset-naive and offset-aware datetimes",
    }
    alerts = [decode_event(m.payload) for m in db.messages("alerts")]
    failed = [e for e in alerts if isinstance(e, ReconciliationFailed)]
    assert [(e.reference_data_id, e.snap, e.stage) for e in failed] == [("BAD", SNAP, "window")]
    assert meter.set_aside == {"window": 1}
    assert meter.failed_reconciliations == 1
    # Not retried every round: nothing is due any more.
    assert await close_due_windows(db, topics=TOPICS, transient=lambda e: False) == []


async def test_a_transient_failure_is_raised_for_the_next_round_and_nothing_set_aside() -> None:
    db = Buggy(OSError("connection reset"))
    await open_snaps(db, "BAD")

    with pytest.raises(OSError, match="connection reset"):
        await close_due_windows(db, topics=TOPICS, transient=lambda e: isinstance(e, OSError))

    assert db.state.snaps[("BAD", SNAP)].state == "open"
    assert not [r for r in db.state.audit if r.action == "snap.reconciliation_failed"]


class Refusing(FakePublisher):
    """Refuses any event whose key is `HUGE`, as a broker refuses a record too large."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def publish(self, messages: Sequence[PendingMessage]) -> list[tuple[int, int]]:
        self.calls += 1
        if any(m.key == "HUGE" for m in messages):
            raise EventRefused("MessageSizeTooLargeError")
        return await super().publish(messages)


async def test_an_event_the_bus_refuses_is_set_aside_and_the_relay_goes_on() -> None:
    db = FakeDatabase()
    await open_snaps(db, "AAA", "HUGE", "ZZZ")
    await close_due_windows(db, topics=TOPICS)
    publisher = Refusing()
    meter = Counting()

    await relay_outbox(db, publisher, topics=TOPICS, metrics=meter)

    assert sorted({m.key for m in publisher.sent}) == ["AAA", "ZZZ"]
    refused = {m.id: m.key for m in db.state.outbox if m.id in db.state.set_aside}
    assert sorted(set(refused.values())) == ["HUGE"]
    assert all("MessageSizeTooLargeError" in r for r in db.state.set_aside.values())
    set_aside = [r for r in db.state.audit if r.action == "event.set_aside"]
    assert len(set_aside) == len(refused)
    assert meter.set_aside == {"relay": len(refused)}
    # Published and set-aside events are both done: the next round sends nothing.
    sent = len(publisher.sent)
    assert await relay_outbox(db, publisher, topics=TOPICS) == 0
    assert len(publisher.sent) == sent


async def test_an_audit_record_the_bus_refuses_is_skipped_and_counted() -> None:
    db = FakeDatabase()
    await open_snaps(db, "AAA", "HUGE")
    publisher = Refusing()
    meter = Counting()

    relayed = await relay_audit(db, publisher, topics=TOPICS, metrics=meter)

    assert relayed == len(db.state.audit)
    assert {m.key for m in publisher.sent} == {"AAA"}
    assert meter.set_aside == {
        "audit-relay": len([r for r in db.state.audit if "HUGE" in r.entity_id])
    }
    assert db.state.positions["audit"] == db.state.audit[-1].seq
