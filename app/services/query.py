"""Query use cases: official values, versions, history, lineage and quality, through the cache.

Each read returns the encoded response body (what the cache stores), or `ABSENT` when
there is nothing to return (the route answers 404). Cache policy per read:

| read                                | key                                          | kind      |
|-------------------------------------|----------------------------------------------|-----------|
| latest                              | `official:{id}:{snap}:latest`                | precise   |
| `version=N` (found)                 | `official:{id}:{snap}:{N}`                   | immutable |
| `as_of` settled                     | `official:{id}:{snap}:as_of={T}`             | immutable |
| `as_of` not settled (recent/future) | same key                                     | scoped    |
| versions                            | `official:{id}:{snap}:versions`              | precise   |
| history, settled `as_of`            | `historical:{id}:{from}:{to}:{gran}:{hash}`  | immutable |
| history, otherwise                  | same key                                     | scoped    |
| quality                             | `quality:{id}:{window}:summary`              | scoped    |
| lineage                             | not cached: an observation changes it, maybe unpublished |

`as_of` is *settled* once it is `settle_seconds` in the past: no transaction still open
can then record a version at or before it. `{hash}` covers as_of, page start and limit.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec

from app.domain.bounds import text_problem, timestamp_problem
from app.domain.observation import AwareDatetime
from app.domain.reading import (
    GRANULARITY_STEP,
    Granularity,
    HistoryItem,
    HistoryPage,
    LineagePage,
    VersionList,
)
from app.domain.timestamps import rfc3339
from app.ports import QueryStore
from app.services.cache import (
    ABSENT,
    CachePolicy,
    CacheStats,
    Lookup,
    TwoLevelCache,
    latest_key,
    official_key,
    versions_key,
)

_MICROSECOND = timedelta(microseconds=1)
_T = TypeVar("_T")
_encoder = msgspec.json.Encoder()


class InvalidQuery(ValueError):
    """A query that cannot be answered as asked (bad cursor, empty range)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class _Versioned(msgspec.Struct):
    version: int


class _HistoryCursor(msgspec.Struct, forbid_unknown_fields=True):
    start: AwareDatetime  # the next page's first snap (or bucket) position, inclusive


class _LineageCursor(msgspec.Struct, forbid_unknown_fields=True):
    received_at: AwareDatetime
    observation_id: str

    def __post_init__(self) -> None:
        # A forged cursor must not reach PostgreSQL with what it cannot compare.
        problem = timestamp_problem(self.received_at) or text_problem(self.observation_id)
        if problem:
            raise ValueError(problem)


_versioned = msgspec.json.Decoder(_Versioned)
_history_cursor = msgspec.json.Decoder(_HistoryCursor)
_lineage_cursor = msgspec.json.Decoder(_LineageCursor)


def encode_cursor(position: msgspec.Struct) -> str:
    """An opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(_encoder.encode(position)).decode().rstrip("=")


def _decode_cursor(cursor: str, decoder: msgspec.json.Decoder[_T]) -> _T:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return decoder.decode(raw)
    except (ValueError, msgspec.DecodeError):
        raise InvalidQuery("cursor", "not a cursor this service issued") from None


def version_of(body: bytes) -> int:
    """The version in an encoded official value (0 for ABSENT)."""
    return 0 if body == ABSENT else _versioned.decode(body).version


class QueryService:
    """The reads of the query API, each through the two-level cache where that is safe."""

    def __init__(
        self,
        store: QueryStore,
        cache: TwoLevelCache,
        policy: CachePolicy,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._cache = cache
        self._policy = policy
        self._now = now

    @property
    def cache_stats(self) -> CacheStats:
        """Hit, miss, load and fallback counters of this process' cache."""
        return self._cache.stats

    def _settled(self, as_of: datetime) -> bool:
        return as_of <= self._now() - timedelta(seconds=self._policy.settle_seconds)

    def _immutable(self, key: str, cache_absent: bool = True) -> Lookup:
        s = self._policy
        return Lookup(
            key,
            s.l1_immutable_ttl_seconds,
            s.immutable_ttl_seconds,
            absent_l1_ttl=s.l1_immutable_ttl_seconds if cache_absent else 0.0,
            absent_l2_ttl=s.immutable_ttl_seconds if cache_absent else 0,
        )

    def _mutable(self, key: str, series: str, *, scoped: bool, l2_ttl: int) -> Lookup:
        s = self._policy
        return Lookup(
            key,
            s.l1_mutable_ttl_seconds,
            l2_ttl,
            series=series,
            scoped=scoped,
            absent_l1_ttl=min(s.l1_mutable_ttl_seconds, s.absent_ttl_seconds),
            absent_l2_ttl=s.absent_ttl_seconds,
        )

    async def official_value(
        self,
        series: str,
        snap: datetime,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> bytes:
        """Latest version, version `version`, or as known at `as_of`; ABSENT when none."""
        snap_text = rfc3339(snap)
        if version is not None:
            # A version that exists never changes; one that does not may appear any time.
            return await self._cache.get_or_load(
                self._immutable(official_key(series, snap_text, str(version)), False),
                self._encoded(lambda: self._store.version(series, snap, version)),
            )
        if as_of is not None:
            key = official_key(series, snap_text, f"as_of={rfc3339(as_of)}")
            lookup = (
                self._immutable(key)
                if self._settled(as_of)
                else self._mutable(
                    key, series, scoped=True, l2_ttl=self._policy.official_ttl_seconds
                )
            )
            return await self._cache.get_or_load(
                lookup, self._encoded(lambda: self._store.as_of(series, snap, as_of))
            )
        key = latest_key(series, snap_text)
        hit = self._cache.cached(key, mutable=True)  # the hot path: no closures on a hit
        if hit is not None:
            return hit

        async def load() -> bytes:
            found = await self._store.latest(series, snap)
            floor = self._cache.floor(key)
            if floor is not None and (found is None or found.version < floor):
                # The reader lags the writer that announced `floor`: ask the writer.
                found = await self._store.latest(series, snap, primary=True)
            return ABSENT if found is None else _encoder.encode(found)

        def recent_enough(body: bytes) -> bool:
            floor = self._cache.floor(key)
            return floor is None or version_of(body) >= floor

        lookup = self._mutable(key, series, scoped=False, l2_ttl=self._policy.official_ttl_seconds)
        return await self._cache.load_through(lookup, load, recent_enough)

    async def versions(self, series: str, snap: datetime) -> bytes:
        """Every version of the snap, oldest first; ABSENT when there is none."""

        async def load() -> bytes:
            found = await self._store.versions(series, snap)
            return _encoder.encode(VersionList(items=found)) if found else ABSENT

        lookup = self._mutable(
            versions_key(series, rfc3339(snap)),
            series,
            scoped=False,
            l2_ttl=self._policy.official_ttl_seconds,
        )
        return await self._cache.get_or_load(lookup, load)

    async def history(
        self,
        series: str,
        start: datetime,
        end: datetime,
        *,
        granularity: Granularity = "raw",
        as_of: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> bytes:
        """One page of the series' history with `start <= snap < end`."""
        if start >= end:
            raise InvalidQuery("to", "`to` must be after `from`")
        page_start = start
        if cursor is not None:
            page_start = _decode_cursor(cursor, _history_cursor).start
            if not start <= page_start <= end:
                raise InvalidQuery("cursor", "the cursor does not belong to this range")
        step = GRANULARITY_STEP[granularity]

        async def load() -> bytes:
            items: list[HistoryItem] = []
            next_cursor = None
            if page_start < end:
                found = await self._store.history(
                    series, page_start, end, granularity, as_of, limit + 1
                )
                items = list(found[:limit])
                if len(found) > limit:
                    last = found[limit - 1]
                    after = last.snap + _MICROSECOND if step is None else last.bucket + step
                    next_cursor = encode_cursor(_HistoryCursor(start=after))
            return _encoder.encode(HistoryPage(items=items, next_cursor=next_cursor))

        digest = hashlib.blake2b(
            _encoder.encode([as_of, page_start, limit]), digest_size=8
        ).hexdigest()
        key = f"historical:{{{series}}}:{rfc3339(start)}:{rfc3339(end)}:{granularity}:{digest}"
        lookup = (
            self._immutable(key)
            if as_of is not None and self._settled(as_of)
            else self._mutable(key, series, scoped=True, l2_ttl=self._policy.official_ttl_seconds)
        )
        return await self._cache.get_or_load(lookup, load)

    async def lineage(
        self, series: str, snap: datetime, *, limit: int = 100, cursor: str | None = None
    ) -> bytes:
        """The observations behind a snap, by receipt. Not cached: a new observation changes
        it without necessarily publishing anything."""
        after = None
        if cursor is not None:
            position = _decode_cursor(cursor, _lineage_cursor)
            after = (position.received_at, position.observation_id)
        found = await self._store.observations(series, snap, after, limit + 1)
        next_cursor = None
        if len(found) > limit:
            last = found[limit - 1]
            next_cursor = encode_cursor(
                _LineageCursor(received_at=last.received_at, observation_id=last.observation_id)
            )
        return _encoder.encode(LineagePage(items=found[:limit], next_cursor=next_cursor))

    async def quality(
        self,
        series: str,
        *,
        window: timedelta | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> bytes:
        """Quality summary over the last `window`, or over `[start, end)`."""
        if window is not None:
            label = _window_label(window)

            async def load() -> bytes:
                now = self._now()
                return _encoder.encode(await self._store.quality(series, now - window, now))

        elif start is not None and end is not None:
            if start >= end:
                raise InvalidQuery("to", "`to` must be after `from`")
            label = f"{rfc3339(start)}/{rfc3339(end)}"

            async def load() -> bytes:
                return _encoder.encode(await self._store.quality(series, start, end))

        else:
            raise InvalidQuery("window", "give `window`, or both `from` and `to`")
        lookup = self._mutable(
            f"quality:{{{series}}}:{label}:summary",
            series,
            scoped=True,
            l2_ttl=self._policy.quality_ttl_seconds,
        )
        return await self._cache.get_or_load(lookup, load)

    @staticmethod
    def _encoded(
        read: Callable[[], Awaitable[msgspec.Struct | None]],
    ) -> Callable[[], Awaitable[bytes]]:
        async def load() -> bytes:
            found = await read()
            return ABSENT if found is None else _encoder.encode(found)

        return load


def _window_label(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
