"""Reads that reach the lake: the query service over the lake alone (backtests, `qis lake
query`), and the tiered store that answers the API's reads older than retention from it.

Both reuse `QueryService` unchanged, so a lake answer has the API's shape, paging and
cursors: the lake is one more `QueryStore` (app/adapters/lake_reader.py).

`TieredQueries` splits each read at the dataset's horizon (`LakeHorizon`): what lies
before it comes from the lake, the rest from the database (app/domain/lake_reading.py).
A history page is the lake's part first, then the database's, up to `limit`; a bucket
holding the horizon is merged from both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from app.domain.lake import OBSERVATIONS, OFFICIAL_VALUES
from app.domain.lake_reading import bucket_start, merge_bucket
from app.domain.observation import Observation
from app.domain.quality import SCORE_DECIMALS
from app.domain.reading import (
    GRANULARITY_STEP,
    Granularity,
    HistoryItem,
    QualityAverages,
    QualitySummary,
)
from app.domain.versions import OfficialValue
from app.ports import LakeHorizon, QueryStore
from app.services.cache import CachePolicy, TwoLevelCache
from app.services.instrumentation import NULL_METRICS
from app.services.query import QueryService


class _NoLocalCache:
    """An L1 that keeps nothing."""

    def get(self, key: str) -> bytes | None:
        return None

    def put(self, key: str, value: bytes, ttl_seconds: float, tag: str | None = None) -> None:
        return None

    def discard(self, key: str) -> None:
        return None

    def discard_tag(self, tag: str) -> int:
        return 0

    def clear(self) -> None:
        return None


class _NoSharedCache:
    """An L2 that keeps nothing."""

    async def get(self, key: str) -> bytes | None:
        return None

    async def get_scoped(self, scope: str, key: str) -> tuple[str, bytes | None]:
        return "", None

    async def put(self, key: str, value: bytes, ttl_seconds: int, generation: str = "") -> None:
        return None

    async def invalidate(self, keys: Sequence[str], scopes: Sequence[str]) -> None:
        return None


def uncached_query_service(store: QueryStore) -> QueryService:
    """`QueryService` reading `store` on every call (a one-shot command caches nothing)."""
    policy = CachePolicy()
    return QueryService(
        store, TwoLevelCache(_NoLocalCache(), _NoSharedCache(), policy, NULL_METRICS), policy
    )


class TieredQueries:
    """`QueryStore`: the database, and the lake (`lake()` opens it) for what retention
    dropped from it."""

    def __init__(
        self, database: QueryStore, lake: Callable[[], QueryStore], horizon: LakeHorizon
    ) -> None:
        self._db = database
        self._open_lake = lake
        self._lake_store: QueryStore | None = None
        self._horizon = horizon

    @property
    def _lake(self) -> QueryStore:
        # Opened at the first read before the horizon: a process that never reads that
        # far never loads the lake's engine.
        if self._lake_store is None:
            self._lake_store = self._open_lake()
        return self._lake_store

    async def _store_of(self, dataset: str, snap: datetime) -> QueryStore:
        horizon = await self._horizon.retained_from(dataset)
        return self._lake if horizon is not None and snap < horizon else self._db

    async def latest(
        self, series: str, snap: datetime, *, primary: bool = False
    ) -> OfficialValue | None:
        store = await self._store_of(OFFICIAL_VALUES, snap)
        return await store.latest(series, snap, primary=primary)

    async def version(self, series: str, snap: datetime, version: int) -> OfficialValue | None:
        store = await self._store_of(OFFICIAL_VALUES, snap)
        return await store.version(series, snap, version)

    async def as_of(self, series: str, snap: datetime, as_of: datetime) -> OfficialValue | None:
        store = await self._store_of(OFFICIAL_VALUES, snap)
        return await store.as_of(series, snap, as_of)

    async def versions(self, series: str, snap: datetime) -> list[OfficialValue]:
        store = await self._store_of(OFFICIAL_VALUES, snap)
        return await store.versions(series, snap)

    async def observations(
        self, series: str, snap: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Observation]:
        horizon = await self._horizon.retained_from(OBSERVATIONS)
        if horizon is None or snap >= horizon:
            return await self._db.observations(series, snap, after, limit)
        # Dropped from the database, but a late observation of the snap may have arrived
        # since (retention leaves such rows in the database): both, in receipt order.
        archived = await self._lake.observations(series, snap, after, limit)
        late = await self._db.observations(series, snap, after, limit)
        merged = {o.observation_id: o for o in [*archived, *late]}.values()
        return sorted(merged, key=lambda o: (o.received_at, o.observation_id))[:limit]

    async def history(
        self,
        series: str,
        start: datetime,
        end: datetime,
        granularity: Granularity,
        as_of: datetime | None,
        limit: int,
    ) -> list[HistoryItem]:
        horizon = await self._horizon.retained_from(OFFICIAL_VALUES)
        if horizon is None or start >= horizon:
            return await self._db.history(series, start, end, granularity, as_of, limit)
        if end <= horizon:
            return await self._lake.history(series, start, end, granularity, as_of, limit)
        step = GRANULARITY_STEP[granularity]
        split = bucket_start(horizon, step)
        items: list[HistoryItem] = []
        if start < split:
            items = await self._lake.history(series, start, split, granularity, as_of, limit)
        rest = max(start, split)
        if len(items) < limit and step is not None and split < horizon:
            # The bucket holding the horizon: its snaps before it in the lake, after in the db.
            bucket_end = min(end, split + step)
            older = await self._lake.history(series, rest, horizon, granularity, as_of, 1)
            newer = await self._db.history(series, horizon, bucket_end, granularity, as_of, 1)
            merged = merge_bucket(older[0] if older else None, newer[0] if newer else None)
            if merged is not None:
                items.append(merged)
            rest = bucket_end
        if len(items) < limit and rest < end:
            items += await self._db.history(
                series, rest, end, granularity, as_of, limit - len(items)
            )
        return items

    async def quality(self, series: str, start: datetime, end: datetime) -> QualitySummary:
        horizon = await self._horizon.retained_from(OFFICIAL_VALUES)
        if horizon is None or start >= horizon:
            return await self._db.quality(series, start, end)
        if end <= horizon:
            return await self._lake.quality(series, start, end)
        older = await self._lake.quality(series, start, horizon)
        newer = await self._db.quality(series, horizon, end)
        return combine_quality(older, newer, start, end)


def combine_quality(
    a: QualitySummary, b: QualitySummary, start: datetime, end: datetime
) -> QualitySummary:
    """The summary of two disjoint ranges from theirs (averages weighted by count; from
    rounded averages, so the last decimal may differ from a summary over both at once)."""
    parts = [s for s in (a, b) if s.count]
    count = sum(s.count for s in parts)
    if not parts:
        return QualitySummary(
            reference_data_id=a.reference_data_id,
            from_=start,
            to=end,
            count=0,
            average_score=None,
            minimum_score=None,
            suspect_count=0,
            average_dimensions=None,
        )

    def mean(values: list[tuple[float, int]]) -> float:
        return round(sum(v * n for v, n in values) / count, SCORE_DECIMALS)

    dims = [(s.average_dimensions, s.count) for s in parts if s.average_dimensions is not None]
    return QualitySummary(
        reference_data_id=a.reference_data_id,
        from_=start,
        to=end,
        count=count,
        average_score=mean([(s.average_score or 0.0, s.count) for s in parts]),
        minimum_score=min(s.minimum_score for s in parts if s.minimum_score is not None),
        suspect_count=sum(s.suspect_count for s in parts),
        average_dimensions=QualityAverages(
            completeness=mean([(d.completeness, n) for d, n in dims]),
            timeliness=mean([(d.timeliness, n) for d, n in dims]),
            consistency=mean([(d.consistency, n) for d, n in dims]),
            validity=mean([(d.validity, n) for d, n in dims]),
        ),
    )
