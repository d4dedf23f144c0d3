"""Two-level read-through cache for query results: L1 in process, L2 shared, then the loader.

What is cached is the encoded response body (msgspec JSON bytes), so a hit is served
without decoding or encoding anything. docs/cache.md has the whole design; in short:

- *Immutable* entries (a specific version, an as_of that is settled) never change and
  live long. *Mutable* entries name the series whose publications change them: a
  snap's "latest" and version list are *precise* (a publication names its snap), a
  history page or quality summary is *scoped* (any publication of the series may change
  it). `published()` drops them from L1 at once and queues their L2 invalidation.
- A mutable result loaded by a query that started before (or just after, see the
  replica guard) the last publication of its series is served but not stored: it may
  predate the publication.
- While the publication listener is disconnected nothing mutable is read from or
  stored in L1, and L1 is cleared, since a publication could go unnoticed.
- Concurrent misses of one key share one load (single flight).
- An L2 failure never fails a read: the read goes to the loader (PostgreSQL), the
  fallback is counted, and L2 is skipped for `redis_retry_seconds`. Invalidations that
  failed are retried, and L2 is not read until they went through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec

from app.domain.timestamps import rfc3339
from app.ports import CacheUnavailable, LocalCache, Metrics, SharedCache

_log = logging.getLogger("qis.cache")

# Invalidations kept for retry while L2 is down; beyond this, the oldest are given up
# (their entries then live until their TTL) and an error is logged.
MAX_PENDING_INVALIDATIONS = 100_000
_PRUNE_EVERY_SECONDS = 5.0
# A load in flight is bounded by the database command timeout; remembering publications a
# minute past the guard covers any load that may still store afterwards.
_NOTIFIED_HORIZON_SECONDS = 60.0


def official_key(series: str, snap: str, selector: str) -> str:
    """`official:{series}:{snap}:{version}`; the braces are a Redis Cluster hash tag."""
    return f"official:{{{series}}}:{snap}:{selector}"


def latest_key(series: str, snap: str) -> str:
    return official_key(series, snap, "latest")


def versions_key(series: str, snap: str) -> str:
    return official_key(series, snap, "versions")


def scope_key(series: str) -> str:
    """The L2 scope (generation) of a series' history pages and quality summaries."""
    return f"scope:{{{series}}}"


class CachePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How long results are cached and what counts as settled (the composition builds it
    from `CacheSettings`, where docs/cache.md explains every value)."""

    # TTLs in L1 (seconds) and in L2 (whole seconds).
    l1_mutable_ttl_seconds: float = 300.0
    l1_immutable_ttl_seconds: float = 600.0
    official_ttl_seconds: int = 300
    quality_ttl_seconds: int = 600
    immutable_ttl_seconds: int = 3600
    absent_ttl_seconds: int = 60
    descriptor_ttl_seconds: int = 300
    descriptor_l1_ttl_seconds: float = 5.0
    # An as_of this far in the past is settled: what it reads is immutable.
    settle_seconds: float = 60.0
    # Loads started this soon after a publication of their series are served, not cached.
    replica_lag_guard_seconds: float = 1.0
    # How long "latest must be at least version N" is remembered after a publication.
    floor_seconds: float = 30.0
    # After an L2 error, reads skip L2 for this long.
    redis_retry_seconds: float = 1.0


# A load's result meaning "nothing there" (a 404): cached with its own TTLs, 0 = not at all.
ABSENT = b""


@dataclass(frozen=True, slots=True)
class Lookup:
    """One cacheable result: its key, TTLs, and what makes it change.

    `series` None: immutable. Otherwise publications of that series change it; `scoped`
    False means only a publication of the snap in the key does (latest, versions).
    """

    key: str
    l1_ttl: float
    l2_ttl: int
    series: str | None = None
    scoped: bool = False
    absent_l1_ttl: float = 0.0
    absent_l2_ttl: int = 0
    # Whether the loader may read a replica that lags the writer (Aurora readers): then
    # loads started within `replica_lag_guard_seconds` after a change are not stored.
    replica_reads: bool = True


@dataclass
class CacheStats:
    """Counters since start (the metrics carry the same as ratios)."""

    l1_hits: int = 0
    l1_misses: int = 0
    l2_hits: int = 0
    l2_misses: int = 0
    loads: int = 0
    fallbacks: int = 0
    invalidations: int = 0

    @property
    def hit_ratio(self) -> float:
        """Share of lookups answered without the loader (L1 or L2)."""
        lookups = self.l1_hits + self.l1_misses
        return (lookups - self.loads) / lookups if lookups else 0.0


class TwoLevelCache:
    """L1 (`LocalCache`) over L2 (`SharedCache`) over a loader, per API process."""

    def __init__(
        self,
        l1: LocalCache,
        l2: SharedCache,
        policy: CachePolicy,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._l1 = l1
        self._l2 = l2
        self._policy = policy
        self._metrics = metrics
        self._clock = clock
        self.stats = CacheStats()
        self._flights: dict[str, tuple[asyncio.Future[bytes], str | None]] = {}
        # Publications: last time per series (scoped entries) and per precise key, and per
        # latest key the version it must reach.
        self._notified: dict[str, float] = {}
        self._floors: dict[str, tuple[int, float]] = {}
        self._pruned_at = clock()
        # L2 invalidations not done yet; `_failed` while a try failed (L2 is not read then).
        self._pending_keys: dict[str, None] = {}
        self._pending_scopes: dict[str, None] = {}
        self._failed = False
        self._wake = asyncio.Event()
        self._l2_down_until = 0.0
        self._live = False
        self._live_since = 0.0

    # -- reads ------------------------------------------------------------------------

    async def get_or_load(
        self,
        lookup: Lookup,
        load: Callable[[], Awaitable[bytes]],
        accept: Callable[[bytes], bool] | None = None,
    ) -> bytes:
        """The cached bytes for `lookup`, or `load()`'s (shared by concurrent misses).

        `accept` vets an L2 hit (e.g. "is it at least the version just published?").
        """
        value = self.cached(lookup.key, mutable=lookup.series is not None)
        if value is not None:
            return value
        return await self.load_through(lookup, load, accept)

    def cached(self, key: str, *, mutable: bool) -> bytes | None:
        """The L1 entry, if L1 may answer (mutable entries: only while listening)."""
        value = self._l1.get(key) if self._live or not mutable else None
        if value is None:
            self.stats.l1_misses += 1
            self._metrics.cache_lookup("L1", False)
        else:
            self.stats.l1_hits += 1
            self._metrics.cache_lookup("L1", True)
        return value

    async def load_through(
        self,
        lookup: Lookup,
        load: Callable[[], Awaitable[bytes]],
        accept: Callable[[bytes], bool] | None = None,
    ) -> bytes:
        """After an L1 miss: L2, then `load()`, one at a time per key; fills both levels."""
        flight = self._flights.get(lookup.key)
        future: asyncio.Future[bytes]
        if flight is None:
            future = asyncio.ensure_future(self._fill(lookup, load, accept))
            future.add_done_callback(self._landed(lookup.key))
            self._flights[lookup.key] = (future, lookup.series)
        else:
            future = flight[0]
        # shield: a client going away cancels its own wait, not the load others share.
        return await asyncio.shield(future)

    def _landed(self, key: str) -> Callable[[asyncio.Future[bytes]], None]:
        def done(future: asyncio.Future[bytes]) -> None:
            flight = self._flights.get(key)
            if flight is not None and flight[0] is future:
                del self._flights[key]
            if not future.cancelled():
                future.exception()  # retrieved: every waiter may have gone

        return done

    async def _fill(
        self,
        lookup: Lookup,
        load: Callable[[], Awaitable[bytes]],
        accept: Callable[[bytes], bool] | None,
    ) -> bytes:
        started = self._clock()
        generation = ""
        l2_up = self._l2_readable(started)
        value: bytes | None = None
        if l2_up:
            try:
                if lookup.scoped and lookup.series is not None:
                    generation, value = await self._l2.get_scoped(
                        scope_key(lookup.series), lookup.key
                    )
                else:
                    value = await self._l2.get(lookup.key)
            except CacheUnavailable as exc:
                self._l2_failed(exc)
                l2_up = False
            else:
                if value is not None and accept is not None and not accept(value):
                    value = None
                hit = value is not None
                if hit:
                    self.stats.l2_hits += 1
                else:
                    self.stats.l2_misses += 1
                self._metrics.cache_lookup("L2", hit)
        if value is None:
            if not l2_up:
                self.stats.fallbacks += 1
                self._metrics.cache_fallback()
            self.stats.loads += 1
            value = await load()
            l2_ttl = lookup.absent_l2_ttl if value == ABSENT else lookup.l2_ttl
            if l2_up and l2_ttl > 0 and self._may_store(lookup, started):
                try:
                    await self._l2.put(lookup.key, value, l2_ttl, generation)
                except CacheUnavailable as exc:
                    self._l2_failed(exc)
        l1_ttl = lookup.absent_l1_ttl if value == ABSENT else lookup.l1_ttl
        if self._may_store(lookup, started):
            self._l1.put(lookup.key, value, l1_ttl, lookup.series if lookup.scoped else None)
        return value

    def _may_store(self, lookup: Lookup, started: float) -> bool:
        """Immutable: always. Mutable: only if no publication of its series can be missing."""
        if lookup.series is None:
            return True
        if not self._live or self._live_since > started:
            return False
        # A precise key is changed by publications of its own snap only.
        notified = self._notified.get(lookup.series if lookup.scoped else lookup.key)
        if notified is None:
            return True
        if not lookup.replica_reads:
            return notified < started
        return notified + self._policy.replica_lag_guard_seconds <= started

    def _l2_readable(self, now: float) -> bool:
        return not self._failed and now >= self._l2_down_until

    def _l2_failed(self, exc: CacheUnavailable) -> None:
        if self._clock() >= self._l2_down_until:
            _log.warning("L2 cache unavailable; reading from PostgreSQL", extra={"error": str(exc)})
        self._l2_down_until = self._clock() + self._policy.redis_retry_seconds

    def floor(self, key: str) -> int | None:
        """The version a latest key must have reached: the highest one announced lately."""
        floor = self._floors.get(key)
        return None if floor is None else floor[0]

    # -- publications ---------------------------------------------------------------------

    def published(self, series: str, snap: datetime, version: int) -> None:
        """A new version of (series, snap) was committed: drop what it changes, now."""
        now = self._clock()
        snap_text = rfc3339(snap)
        latest = latest_key(series, snap_text)
        versions = versions_key(series, snap_text)
        self._notified[series] = now  # scoped entries of the series
        self._notified[latest] = now
        self._notified[versions] = now
        known = self._floors.get(latest)
        self._floors[latest] = (max(version, known[0] if known else 0), now)
        self._l1.discard(latest)
        self._l1.discard(versions)
        self._l1.discard_tag(series)
        # New requests must not join a load that may have read the old state.
        for key in [k for k, (_, s) in self._flights.items() if s == series]:
            del self._flights[key]
        self._pending_keys[latest] = None
        self._pending_keys[versions] = None
        self._pending_scopes[scope_key(series)] = None
        self.stats.invalidations += 1
        self._wake.set()

    async def changed(self, scope: str) -> None:
        """This process changed what the entries of `scope` (a `Lookup.series` of scoped
        entries) hold, e.g. a descriptor PUT: drop them from L1, keep loads in flight from
        storing, and start a new L2 generation of the scope before returning (if L2 does
        not answer, the invalidation is queued and L2 is not read until it went through)."""
        self._notified[scope] = self._clock()
        self._l1.discard_tag(scope)
        for key in [k for k, (_, s) in self._flights.items() if s == scope]:
            del self._flights[key]
        self.stats.invalidations += 1
        try:
            await self._l2.invalidate([], [scope_key(scope)])
        except CacheUnavailable as exc:
            self._failed = True
            self._l2_failed(exc)
            self._pending_scopes[scope_key(scope)] = None
            self._wake.set()

    def connected(self) -> None:
        """The publication listener is (again) listening: mutable entries may be cached."""
        self._live = True
        self._live_since = self._clock()

    def disconnected(self) -> None:
        """The listener lost its connection: publications may go unseen, so forget L1."""
        self._live = False
        self._l1.clear()

    async def run_invalidations(self) -> None:
        """Apply queued L2 invalidations in batches; retry them while L2 is down. Runs forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            keys, scopes = list(self._pending_keys), list(self._pending_scopes)
            self._pending_keys.clear()
            self._pending_scopes.clear()
            try:
                await self._l2.invalidate(keys, scopes)
            except Exception as exc:  # CacheUnavailable, or anything: keep them, retry
                self._failed = True
                self._l2_failed(
                    exc if isinstance(exc, CacheUnavailable) else CacheUnavailable(repr(exc))
                )
                self._requeue(keys, scopes)
                await asyncio.sleep(self._policy.redis_retry_seconds)
                self._wake.set()
            else:
                if not self._pending_keys and not self._pending_scopes:
                    self._failed = False
            self._prune()

    def _requeue(self, keys: list[str], scopes: list[str]) -> None:
        # Older first, newer (queued meanwhile) after, so the oldest are the ones given up.
        merged_keys = dict.fromkeys(keys) | self._pending_keys
        merged_scopes = dict.fromkeys(scopes) | self._pending_scopes
        excess = len(merged_keys) + len(merged_scopes) - MAX_PENDING_INVALIDATIONS
        if excess > 0:
            _log.error(
                "L2 invalidations given up; entries live until their TTL", extra={"count": excess}
            )
            for key in list(merged_keys)[:excess]:
                del merged_keys[key]
        self._pending_keys = merged_keys
        self._pending_scopes = merged_scopes

    def _prune(self) -> None:
        now = self._clock()
        if now - self._pruned_at < _PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        floor_horizon = now - self._policy.floor_seconds
        self._floors = {k: v for k, v in self._floors.items() if v[1] > floor_horizon}
        horizon = now - self._policy.replica_lag_guard_seconds - _NOTIFIED_HORIZON_SECONDS
        self._notified = {k: t for k, t in self._notified.items() if t > horizon}
