"""L1: LRU bounded by entries and bytes, TTL per entry, groups dropped by tag."""

from __future__ import annotations

import pytest

from app.adapters.memory_cache import ENTRY_OVERHEAD_BYTES, MemoryCache
from tests.unit.services.cache_fakes import Clock


def size(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD_BYTES


def test_least_recently_used_entry_goes_when_entries_are_full() -> None:
    l1 = MemoryCache(max_entries=2, max_bytes=10_000)
    l1.put("a", b"1", 60)
    l1.put("b", b"2", 60)
    assert l1.get("a") == b"1"  # a is now more recent than b
    l1.put("c", b"3", 60)
    assert (l1.get("a"), l1.get("b"), l1.get("c")) == (b"1", None, b"3")
    assert l1.evictions == 1
    assert len(l1) == 2


def test_bytes_bound_evicts_until_it_holds() -> None:
    value = b"x" * 100
    l1 = MemoryCache(max_entries=100, max_bytes=2 * size("k1", value) + 10)
    l1.put("k1", value, 60)
    l1.put("k2", value, 60)
    assert l1.bytes == 2 * size("k1", value)
    l1.put("k3", value, 60)
    assert (l1.get("k1"), l1.get("k2"), l1.get("k3")) == (None, value, value)
    assert l1.bytes == 2 * size("k1", value)


def test_an_entry_larger_than_the_whole_cache_is_not_stored() -> None:
    l1 = MemoryCache(max_entries=10, max_bytes=500)
    l1.put("small", b"s", 60)
    l1.put("big", b"x" * 1000, 60)
    assert l1.get("big") is None
    assert l1.get("small") == b"s"


def test_entries_expire_after_their_own_ttl() -> None:
    clock = Clock()
    l1 = MemoryCache(max_entries=10, max_bytes=10_000, clock=clock)
    l1.put("short", b"s", 1.0)
    l1.put("long", b"l", 10.0)
    clock.advance(1.0)
    assert l1.get("short") is None
    assert l1.get("long") == b"l"
    assert l1.bytes == size("long", b"l")


def test_replacing_a_key_keeps_the_byte_count_exact() -> None:
    l1 = MemoryCache(max_entries=10, max_bytes=10_000)
    l1.put("k", b"12345", 60)
    l1.put("k", b"1", 60)
    assert l1.get("k") == b"1"
    assert l1.bytes == size("k", b"1")


def test_discard_tag_drops_exactly_that_series() -> None:
    l1 = MemoryCache(max_entries=10, max_bytes=10_000)
    l1.put("h1", b"1", 60, tag="ETH-USD")
    l1.put("h2", b"2", 60, tag="ETH-USD")
    l1.put("h3", b"3", 60, tag="EURUSD")
    l1.put("latest", b"4", 60)
    assert l1.discard_tag("ETH-USD") == 2
    assert [l1.get(k) for k in ("h1", "h2", "h3", "latest")] == [None, None, b"3", b"4"]
    assert l1.bytes == size("h3", b"3") + size("latest", b"4")
    assert l1.discard_tag("ETH-USD") == 0


def test_evicted_entries_leave_their_tag_index() -> None:
    l1 = MemoryCache(max_entries=1, max_bytes=10_000)
    l1.put("h1", b"1", 60, tag="S")
    l1.put("h2", b"2", 60, tag="S")  # evicts h1
    assert l1.discard_tag("S") == 1
    assert len(l1) == 0
    assert l1.bytes == 0


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        MemoryCache(max_entries=0, max_bytes=1)
