"""Retention's decisions (app/services/retention.py) over an in-memory store."""

from __future__ import annotations

from datetime import UTC, date, datetime

from app.domain.lake import AUDIT, OBSERVATIONS
from app.domain.retention import DayPartition, Dropped, LockBusy, RetentionRefused
from app.services.retention import RetentionPolicy, apply_retention, cutoff

NOW = datetime(2026, 3, 20, 15, 30, tzinfo=UTC)
POLICY = RetentionPolicy(days=10, lock_timeout_seconds=0.1, lock_attempts=2)


class Store:
    def __init__(self, days: list[date], verified: set[datetime]) -> None:
        self.parts = {
            ds: [DayPartition(ds, f"{ds}_p{d:%Y%m%d}", d) for d in days]
            for ds in (OBSERVATIONS, AUDIT)
        }
        self.verified = verified
        self.dropped: list[str] = []
        self.busy: dict[str, int] = {}
        self.refuse: set[str] = set()

    async def partitions(self, dataset: str) -> list[DayPartition]:
        return list(self.parts[dataset])

    async def unverified_hours(self, partition: DayPartition) -> list[datetime]:
        return [h for h in partition.hours() if h not in self.verified]

    async def default_rows_before(self, dataset: str, before: datetime) -> int:
        return 3 if dataset == OBSERVATIONS else 0

    async def drop(self, partition: DayPartition, lock_timeout_seconds: float) -> Dropped:
        if self.busy.get(partition.table, 0) > 0:
            self.busy[partition.table] -= 1
            raise LockBusy(partition.table)
        if partition.table in self.refuse:
            raise RetentionRefused("a record precedes the checkpoint")
        self.dropped.append(partition.table)
        return Dropped(partition, rows=7, checkpoint_seq=None)


def hours_of(*days: date) -> set[datetime]:
    return {h for d in days for h in DayPartition("x", "x", d).hours()}


D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
RECENT = date(2026, 3, 15)  # inside the retention


def test_the_cutoff_is_the_start_of_the_oldest_day_kept() -> None:
    assert cutoff(NOW, 10) == datetime(2026, 3, 10, tzinfo=UTC)


async def test_days_go_oldest_first_and_stop_at_the_first_unverified() -> None:
    store = Store(
        [D1, D2, D3, RECENT],
        hours_of(D1, D3, RECENT) | (hours_of(D2) - {datetime(2026, 3, 2, 17, tzinfo=UTC)}),
    )

    decisions = await apply_retention(store, POLICY, NOW)

    assert store.dropped == ["observations_p20260301", "audit_p20260301"]
    acts = [(d.partition, d.action) for d in decisions]
    assert acts == [
        ("observations_p20260301", "dropped"),
        ("observations_p20260302", "refused"),
        ("default", "kept-default"),
        ("audit_p20260301", "dropped"),
        ("audit_p20260302", "refused"),
    ]
    assert (
        decisions[1].reason == "1 hour(s) not verified in the lake, first 2026-03-02T17:00:00+00:00"
    )
    assert decisions[2].rows == 3


async def test_dry_run_drops_nothing_and_verifies_nothing() -> None:
    store = Store([D1, D2], hours_of(D1, D2))
    called: list[datetime] = []

    async def verify(hour: datetime) -> None:
        called.append(hour)

    decisions = await apply_retention(store, POLICY, NOW, verify=verify, dry_run=True)

    assert store.dropped == []
    assert called == []
    assert [d.action for d in decisions if d.partition != "default"] == ["would-drop"] * 4


async def test_every_hour_is_verified_again_once_before_its_day_goes() -> None:
    store = Store([D1], set())
    called: list[datetime] = []

    async def verify(hour: datetime) -> None:
        called.append(hour)
        store.verified.add(hour)

    await apply_retention(store, POLICY, NOW, verify=verify)

    assert called == sorted(hours_of(D1))  # once, shared by both datasets
    assert store.dropped == ["observations_p20260301", "audit_p20260301"]


async def test_a_busy_lock_is_tried_again_then_left_for_the_next_round() -> None:
    store = Store([D1, D2], hours_of(D1, D2))
    store.busy = {"observations_p20260301": 1, "audit_p20260301": 5}

    decisions = await apply_retention(store, POLICY, NOW)

    assert store.dropped == ["observations_p20260301", "observations_p20260302"]
    audit = [(d.partition, d.action) for d in decisions if d.dataset == AUDIT]
    assert audit == [("audit_p20260301", "busy")]  # and audit_p20260302 waits behind it


async def test_a_refusal_of_the_store_stops_the_dataset() -> None:
    store = Store([D1, D2], hours_of(D1, D2))
    store.refuse = {"audit_p20260301"}

    decisions = await apply_retention(store, POLICY, NOW)

    audit = [(d.action, d.reason) for d in decisions if d.dataset == AUDIT]
    assert audit == [("refused", "a record precedes the checkpoint")]


async def test_no_retention_configured_does_nothing() -> None:
    store = Store([D1], hours_of(D1))
    assert await apply_retention(store, RetentionPolicy(days=0), NOW) == []
    assert store.dropped == []
