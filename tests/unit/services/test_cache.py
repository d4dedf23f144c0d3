"""Two-level cache: read-through, single flight, publications, L2 failures, listener gaps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from app.services.cache import (
    ABSENT,
    CachePolicy,
    Lookup,
    TwoLevelCache,
    latest_key,
    rfc3339,
    scope_key,
)
from tests.unit.services.cache_fakes import Clock, MemoryLocalCache, MemorySharedCache
from tests.unit.services.fakes import RecordingMetrics

SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)
SERIES = "ETH-USD"
LATEST = latest_key(SERIES, rfc3339(SNAP))
SETTINGS = CachePolicy(replica_lag_guard_seconds=1.0, redis_retry_seconds=0.2)


class Loader:
    """Counts calls; answers the current `value` (optionally after a gate opens)."""

    def __init__(self, value: bytes = b'{"version":1}') -> None:
        self.value = value
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> bytes:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def l2() -> MemorySharedCache:
    return MemorySharedCache()


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()


@pytest.fixture
async def cache(
    clock: Clock, l2: MemorySharedCache, metrics: RecordingMetrics
) -> AsyncIterator[TwoLevelCache]:
    cache = TwoLevelCache(MemoryLocalCache(clock), l2, SETTINGS, metrics, clock)
    cache.connected()
    clock.advance(0.001)
    invalidations = asyncio.create_task(cache.run_invalidations())
    yield cache
    invalidations.cancel()
    with pytest.raises(asyncio.CancelledError):
        await invalidations


def latest(ttl: float = 30.0) -> Lookup:
    return Lookup(LATEST, ttl, 300, series=SERIES, absent_l1_ttl=ttl, absent_l2_ttl=60)


def history(key: str = "historical:{ETH-USD}:a:b:raw:1") -> Lookup:
    return Lookup(key, 30.0, 300, series=SERIES, scoped=True)


async def settle() -> None:
    """Let the invalidation task run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_miss_loads_once_then_l1_answers(cache: TwoLevelCache) -> None:
    load = Loader()
    assert await cache.get_or_load(latest(), load) == b'{"version":1}'
    assert await cache.get_or_load(latest(), load) == b'{"version":1}'
    assert load.calls == 1
    assert (cache.stats.l1_hits, cache.stats.l1_misses, cache.stats.loads) == (1, 1, 1)
    assert cache.stats.hit_ratio == 0.5


async def test_l2_answers_a_process_whose_l1_is_cold(
    cache: TwoLevelCache, clock: Clock, l2: MemorySharedCache
) -> None:
    l2.values[LATEST] = b'{"version":7}'
    load = Loader()
    assert await cache.get_or_load(latest(), load) == b'{"version":7}'
    assert load.calls == 0
    assert cache.stats.l2_hits == 1
    l2.values.clear()
    assert await cache.get_or_load(latest(), load) == b'{"version":7}'  # now from L1


async def test_a_load_fills_l2_for_the_other_processes(
    cache: TwoLevelCache, l2: MemorySharedCache
) -> None:
    await cache.get_or_load(latest(), Loader(b'{"version":3}'))
    assert l2.values[LATEST] == b'{"version":3}'


async def test_concurrent_misses_share_one_load(cache: TwoLevelCache) -> None:
    load = Loader()
    load.gate = asyncio.Event()
    waiting = [asyncio.create_task(cache.get_or_load(latest(), load)) for _ in range(50)]
    await asyncio.sleep(0.01)
    load.gate.set()
    results = await asyncio.gather(*waiting)
    assert results == [b'{"version":1}'] * 50
    assert load.calls == 1
    assert cache.stats.loads == 1


async def test_a_waiter_going_away_does_not_cancel_the_shared_load(cache: TwoLevelCache) -> None:
    load = Loader()
    load.gate = asyncio.Event()
    first = asyncio.create_task(cache.get_or_load(latest(), load))
    second = asyncio.create_task(cache.get_or_load(latest(), load))
    await asyncio.sleep(0.01)
    first.cancel()
    load.gate.set()
    assert await second == b'{"version":1}'
    with pytest.raises(asyncio.CancelledError):
        await first
    assert load.calls == 1


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached(cache: TwoLevelCache) -> None:
    calls = 0

    async def failing() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise TimeoutError("db")

    waiting = [asyncio.create_task(cache.get_or_load(latest(), failing)) for _ in range(3)]
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [type(r) for r in results] == [TimeoutError] * 3
    assert calls == 1
    assert await cache.get_or_load(latest(), Loader(b"ok")) == b"ok"


async def test_publication_drops_latest_from_l1_and_l2(
    cache: TwoLevelCache, clock: Clock, l2: MemorySharedCache
) -> None:
    await cache.get_or_load(latest(), Loader(b'{"version":1}'))
    cache.published(SERIES, SNAP, 2)
    await settle()
    assert LATEST not in l2.values
    clock.advance(1.5)  # past the replica guard
    load = Loader(b'{"version":2}')
    assert await cache.get_or_load(latest(), load) == b'{"version":2}'
    assert await cache.get_or_load(latest(), load) == b'{"version":2}'
    assert load.calls == 1


async def test_publication_of_another_snap_keeps_this_latest(
    cache: TwoLevelCache, clock: Clock
) -> None:
    await cache.get_or_load(latest(), Loader(b'{"version":1}'))
    cache.published(SERIES, datetime(2026, 1, 15, 15, tzinfo=UTC), 1)
    load = Loader(b"other")
    assert await cache.get_or_load(latest(), load) == b'{"version":1}'
    assert load.calls == 0


async def test_a_load_that_started_before_the_publication_is_served_not_stored(
    cache: TwoLevelCache, clock: Clock, l2: MemorySharedCache
) -> None:
    stale = Loader(b'{"version":1}')
    stale.gate = asyncio.Event()
    reading = asyncio.create_task(cache.get_or_load(latest(), stale))
    await asyncio.sleep(0.01)
    clock.advance(0.01)
    cache.published(SERIES, SNAP, 2)
    stale.gate.set()
    assert await reading == b'{"version":1}'
    await settle()
    assert LATEST not in l2.values
    clock.advance(2)
    fresh = Loader(b'{"version":2}')
    assert await cache.get_or_load(latest(), fresh) == b'{"version":2}'
    assert fresh.calls == 1


async def test_requests_after_a_publication_do_not_join_an_older_load(
    cache: TwoLevelCache, clock: Clock
) -> None:
    stale = Loader(b'{"version":1}')
    stale.gate = asyncio.Event()
    before = asyncio.create_task(cache.get_or_load(latest(), stale))
    await asyncio.sleep(0.01)
    cache.published(SERIES, SNAP, 2)
    after = await cache.get_or_load(latest(), Loader(b'{"version":2}'))
    assert after == b'{"version":2}'
    stale.gate.set()
    assert await before == b'{"version":1}'


async def test_loads_right_after_a_publication_are_not_cached(
    cache: TwoLevelCache, clock: Clock
) -> None:
    cache.published(SERIES, SNAP, 2)
    clock.advance(0.5)  # within the replica-lag guard: the reader may still lag
    load = Loader(b'{"version":2}')
    await cache.get_or_load(latest(), load)
    await cache.get_or_load(latest(), load)
    assert load.calls == 2
    clock.advance(1.0)
    await cache.get_or_load(latest(), load)
    await cache.get_or_load(latest(), load)
    assert load.calls == 3


async def test_a_publication_of_another_snap_does_not_hold_back_caching_this_one(
    cache: TwoLevelCache, clock: Clock
) -> None:
    cache.published(SERIES, datetime(2026, 1, 15, 15, tzinfo=UTC), 1)
    clock.advance(0.1)
    load = Loader()
    await cache.get_or_load(latest(), load)
    await cache.get_or_load(latest(), load)
    assert load.calls == 1


async def test_an_l2_hit_older_than_the_announced_version_is_refused(
    cache: TwoLevelCache, clock: Clock, l2: MemorySharedCache
) -> None:
    cache.published(SERIES, SNAP, 2)
    await settle()
    # Another process that had not heard of version 2 yet wrote version 1 back.
    l2.values[LATEST] = b'{"version":1}'
    assert cache.floor(LATEST) == 2
    load = Loader(b'{"version":2}')
    body = await cache.get_or_load(latest(), load, accept=lambda b: b != b'{"version":1}')
    assert body == b'{"version":2}'
    assert load.calls == 1


async def test_scoped_entries_go_with_any_publication_of_the_series(
    cache: TwoLevelCache, clock: Clock, l2: MemorySharedCache
) -> None:
    page = Loader(b"page-1")
    assert await cache.get_or_load(history(), page) == b"page-1"
    generation = l2.generations[scope_key(SERIES)]
    assert l2.values[f"{history().key}@{generation}"] == b"page-1"
    cache.published(SERIES, datetime(2020, 1, 1, tzinfo=UTC), 1)
    await settle()
    assert l2.generations[scope_key(SERIES)] != generation
    clock.advance(2)
    page.value = b"page-2"
    assert await cache.get_or_load(history(), page) == b"page-2"
    assert page.calls == 2


async def test_immutable_entries_survive_publications(cache: TwoLevelCache, clock: Clock) -> None:
    lookup = Lookup("official:{ETH-USD}:2026-01-15T14:00:00Z:1", 600, 3600)
    load = Loader()
    await cache.get_or_load(lookup, load)
    cache.published(SERIES, SNAP, 2)
    await cache.get_or_load(lookup, load)
    assert load.calls == 1


async def test_absent_results_use_their_own_ttl(
    cache: TwoLevelCache, l2: MemorySharedCache
) -> None:
    never = Lookup("official:{ETH-USD}:2026-01-15T14:00:00Z:9", 600, 3600)  # absent TTL 0
    load = Loader(ABSENT)
    assert await cache.get_or_load(never, load) == ABSENT
    assert await cache.get_or_load(never, load) == ABSENT
    assert load.calls == 2
    assert never.key not in l2.values
    assert await cache.get_or_load(latest(), load) == ABSENT
    assert await cache.get_or_load(latest(), load) == ABSENT
    assert load.calls == 3
    assert l2.values[LATEST] == ABSENT


async def test_l2_down_reads_go_to_the_loader_and_are_counted(
    cache: TwoLevelCache, clock: Clock, l2: MemorySharedCache
) -> None:
    l2.down = True
    load = Loader()
    assert await cache.get_or_load(history("k1"), load) == b'{"version":1}'
    assert cache.stats.fallbacks == 1
    calls = len(l2.calls)
    # Within the retry window L2 is not even asked; the read still succeeds.
    clock.advance(0.1)
    assert await cache.get_or_load(history("k2"), load) == b'{"version":1}'
    assert len(l2.calls) == calls
    assert cache.stats.fallbacks == 2
    l2.down = False
    clock.advance(0.2)
    await cache.get_or_load(history("k3"), load)
    assert l2.calls[-2:] == ["get_scoped", "put"]
    assert cache.stats.fallbacks == 2


async def test_l1_keeps_serving_while_l2_is_down(
    cache: TwoLevelCache, l2: MemorySharedCache
) -> None:
    load = Loader()
    await cache.get_or_load(latest(), load)
    l2.down = True
    assert await cache.get_or_load(latest(), load) == b'{"version":1}'
    assert load.calls == 1


async def test_l2_is_not_read_until_missed_invalidations_went_through(
    cache: TwoLevelCache, clock: Clock, l2: MemorySharedCache
) -> None:
    l2.values[LATEST] = b'{"version":1}'
    l2.down = True
    cache.published(SERIES, SNAP, 2)
    await settle()
    l2.down = False
    clock.advance(5)  # past the retry window, but the invalidation is still pending
    load = Loader(b'{"version":2}')
    assert await cache.get_or_load(latest(), load) == b'{"version":2}'
    assert l2.values[LATEST] == b'{"version":1}'  # not read, not overwritten
    await asyncio.sleep(SETTINGS.redis_retry_seconds + 0.1)  # the retry runs
    assert LATEST not in l2.values
    await cache.get_or_load(history("k9"), load)  # L2 is read again
    assert l2.calls[-2:] == ["get_scoped", "put"]


async def test_a_listener_gap_empties_l1_and_stops_caching_mutable_entries(
    cache: TwoLevelCache, clock: Clock
) -> None:
    load = Loader()
    await cache.get_or_load(latest(), load)
    cache.disconnected()
    clock.advance(1)
    await cache.get_or_load(latest(), load)  # L2 still answers
    assert load.calls == 1
    assert cache.stats.l1_hits == 0
    cache.connected()
    clock.advance(1)
    await cache.get_or_load(latest(), load)
    await cache.get_or_load(latest(), load)
    assert cache.stats.l1_hits == 1


async def test_keys_are_the_seed_patterns_with_the_series_as_hash_tag() -> None:
    assert LATEST == "official:{ETH-USD}:2026-01-15T14:00:00Z:latest"
    assert scope_key("ETH-USD") == "scope:{ETH-USD}"
    micro = datetime(2026, 1, 15, 14, 0, 0, 120000, tzinfo=UTC)
    assert rfc3339(micro) == "2026-01-15T14:00:00.120000Z"


async def test_each_lookup_and_fallback_is_reported_to_the_metrics(
    cache: TwoLevelCache, l2: MemorySharedCache, metrics: RecordingMetrics
) -> None:
    await cache.get_or_load(latest(), Loader())  # L1 miss, L2 miss, load
    await cache.get_or_load(latest(), Loader())  # L1 hit
    l2.down = True
    await cache.get_or_load(history(), Loader())  # L1 miss, L2 down: fallback

    assert metrics.calls == [
        ("cache_lookup", ("L1", False)),
        ("cache_lookup", ("L2", False)),
        ("cache_lookup", ("L1", True)),
        ("cache_lookup", ("L1", False)),
        ("cache_fallback", ()),
    ]
