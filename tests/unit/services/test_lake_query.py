"""TieredQueries with fake stores: where a read splits at the retention horizon, and what
each side is asked for (the integration tests compare real answers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from app.domain.lake import OBSERVATIONS, OFFICIAL_VALUES
from app.domain.observation import Observation
from app.domain.quality import Quality
from app.domain.reading import Granularity, HistoryItem, QualityAverages, QualitySummary
from app.domain.versions import OfficialValue
from app.services.lake_query import TieredQueries, combine_quality, uncached_query_service

T0 = datetime(2026, 1, 15, tzinfo=UTC)
HORIZON = T0 + timedelta(hours=2)
Q = Quality(score=1.0, completeness=1.0, timeliness=1.0, consistency=1.0, validity=1.0)


def point(snap: datetime, bucket: datetime | None = None, count: int = 1) -> HistoryItem:
    return HistoryItem(
        reference_data_id="S", snap=snap, version=1, value=1.0, status="official",
        method="median", sources_used=("a",), sources_excluded=(), quality=Q,
        supersedes=None, recorded_at=snap, bucket=bucket or snap, count=count,
    )  # fmt: skip


def observation(snap: datetime, oid: str, received: datetime) -> Observation:
    return Observation(
        observation_id=oid, reference_data_id="S", source="a", snap=snap, value=1.0,
        observed_at=snap, received_at=received,
    )  # fmt: skip


class Store:
    """Points every 30 minutes in [T0, T0+4h) that lie on its side of the horizon."""

    def __init__(self, name: str, calls: list[tuple[Any, ...]], below: bool) -> None:
        self.name = name
        self.calls = calls
        self.below = below
        self.snaps = [T0 + timedelta(minutes=30 * i) for i in range(8)]
        self.snaps = [s for s in self.snaps if (s < HORIZON) == below]
        self.observed: list[Observation] = []

    async def history(
        self, series: str, start: datetime, end: datetime, granularity: Granularity,
        as_of: datetime | None, limit: int,
    ) -> list[HistoryItem]:  # fmt: skip
        self.calls.append((self.name, start, end, granularity, limit))
        inside = [s for s in self.snaps if start <= s < end]
        if granularity == "raw":
            return [point(s) for s in inside][:limit]
        assert granularity == "1d"
        return [point(inside[-1], T0, len(inside))] if inside else []

    async def observations(
        self, series: str, snap: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Observation]:
        self.calls.append((self.name, "observations", snap, limit))
        return self.observed[:limit]

    async def quality(self, series: str, start: datetime, end: datetime) -> QualitySummary:
        raise NotImplementedError

    async def latest(self, *a: Any, **k: Any) -> OfficialValue | None:
        self.calls.append((self.name, "latest"))
        return None

    version = as_of = latest

    async def versions(self, *a: Any) -> list[OfficialValue]:
        raise NotImplementedError


class Horizon:
    def __init__(self, at: dict[str, datetime]) -> None:
        self.at = at

    async def retained_from(self, dataset: str) -> datetime | None:
        return self.at.get(dataset)


def tiered(calls: list[tuple[Any, ...]], at: dict[str, datetime]) -> tuple[TieredQueries, Store]:
    lake, db = Store("lake", calls, True), Store("db", calls, False)
    return TieredQueries(db, lambda: lake, Horizon(at)), lake


async def test_a_history_across_the_horizon_pages_from_the_lake_into_the_database() -> None:
    calls: list[tuple[Any, ...]] = []
    store, _ = tiered(calls, {OFFICIAL_VALUES: HORIZON})
    service = uncached_query_service(store)
    end = T0 + timedelta(hours=4)

    first = msgspec.json.decode(await service.history("S", T0, end, limit=3))
    second = msgspec.json.decode(
        await service.history("S", T0, end, limit=3, cursor=first["next_cursor"])
    )
    third = msgspec.json.decode(
        await service.history("S", T0, end, limit=3, cursor=second["next_cursor"])
    )

    snaps = [i["snap"] for p in (first, second, third) for i in p["items"]]
    assert snaps == [f"2026-01-15T{h:02d}:{m:02d}:00Z" for h in range(4) for m in (0, 30)]
    assert third["next_cursor"] is None
    # Page 2 starts in the lake (after 01:00) and ends in the database (02:00, 02:30):
    # the lake is asked up to the horizon, the database for the rest of the page.
    assert calls[1:3] == [
        ("lake", T0 + timedelta(hours=1, microseconds=1), HORIZON, "raw", 4),
        ("db", HORIZON, end, "raw", 3),
    ]
    assert all(c[0] == "db" for c in calls[3:])  # page 3 lies after the horizon


async def test_a_bucket_holding_the_horizon_is_merged_from_both_sides() -> None:
    calls: list[tuple[Any, ...]] = []
    store, _ = tiered(calls, {OFFICIAL_VALUES: HORIZON})

    (day,) = await store.history("S", T0, T0 + timedelta(hours=4), "1d", None, 10)

    assert day.count == 8  # 4 snaps in the lake, 4 in the database
    assert day.snap == T0 + timedelta(hours=3, minutes=30)  # the last, from the database
    assert day.bucket == T0


async def test_no_horizon_or_a_newer_range_never_opens_the_lake() -> None:
    calls: list[tuple[Any, ...]] = []
    opened: list[bool] = []
    db = Store("db", calls, False)
    store = TieredQueries(db, lambda: opened.append(True) or db, Horizon({}))
    await store.history("S", T0, T0 + timedelta(hours=4), "raw", None, 10)
    await store.latest("S", T0)
    store = TieredQueries(db, lambda: opened.append(True) or db, Horizon({OBSERVATIONS: T0}))
    await store.observations("S", T0, None, 10)
    assert opened == []


async def test_observations_before_the_horizon_merge_the_lake_and_late_rows() -> None:
    calls: list[tuple[Any, ...]] = []
    store, lake = tiered(calls, {OBSERVATIONS: HORIZON})
    db = store._db
    assert isinstance(db, Store)
    lake.observed = [observation(T0, "a", T0), observation(T0, "c", T0 + timedelta(seconds=2))]
    # A late row that arrived after the drop, and one already archived again.
    db.observed = [observation(T0, "b", T0 + timedelta(seconds=1)), lake.observed[1]]

    found = await store.observations("S", T0, None, 10)

    assert [o.observation_id for o in found] == ["a", "b", "c"]
    assert await store.observations("S", T0, None, 2) == found[:2]


def test_quality_of_two_parts_weights_the_averages_by_count() -> None:
    def summary(count: int, average: float, minimum: float, suspect: int) -> QualitySummary:
        dims = QualityAverages(
            completeness=average, timeliness=1.0, consistency=average, validity=1.0
        )
        return QualitySummary(
            reference_data_id="S", from_=T0, to=T0, count=count,
            average_score=average if count else None, minimum_score=minimum if count else None,
            suspect_count=suspect, average_dimensions=dims if count else None,
        )  # fmt: skip

    merged = combine_quality(summary(3, 1.0, 1.0, 0), summary(1, 0.6, 0.6, 1), T0, HORIZON)
    assert (merged.count, merged.average_score, merged.minimum_score) == (4, 0.9, 0.6)
    assert merged.suspect_count == 1
    assert merged.average_dimensions == QualityAverages(
        completeness=0.9, timeliness=1.0, consistency=0.9, validity=1.0
    )
    assert (merged.from_, merged.to) == (T0, HORIZON)
    empty = combine_quality(summary(0, 0.0, 0.0, 0), summary(0, 0.0, 0.0, 0), T0, HORIZON)
    assert (empty.count, empty.average_score, empty.average_dimensions) == (0, None, None)
