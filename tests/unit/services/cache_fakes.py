"""In-memory stand-ins for the cache tests: a controllable clock, an L1, and an L2 with
Redis' rules."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from app.ports import CacheUnavailable


class Clock:
    """Monotonic time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemorySharedCache:
    """`SharedCache` semantics (TTLs ignored) with a switch to make every call fail."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.generations: dict[str, str] = {}
        self.down = False
        self.calls: list[str] = []
        self._ids = itertools.count(1)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise CacheUnavailable("redis: down")

    async def get(self, key: str) -> bytes | None:
        self._call("get")
        return self.values.get(key)

    async def get_scoped(self, scope: str, key: str) -> tuple[str, bytes | None]:
        self._call("get_scoped")
        generation = self.generations.setdefault(scope, f"g{next(self._ids)}")
        return generation, self.values.get(f"{key}@{generation}")

    async def put(self, key: str, value: bytes, ttl_seconds: int, generation: str = "") -> None:
        self._call("put")
        assert ttl_seconds > 0
        self.values[f"{key}@{generation}" if generation else key] = value

    async def invalidate(self, keys: Sequence[str], scopes: Sequence[str]) -> None:
        self._call("invalidate")
        for key in keys:
            self.values.pop(key, None)
        for scope in scopes:
            self.generations[scope] = f"g{next(self._ids)}"


class MemoryLocalCache:
    """`LocalCache` semantics without bounds: TTLs on `clock`, tags, and a log of the
    keys dropped by `discard`/`discard_tag`/`clear`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.entries: dict[str, tuple[bytes, float, str | None]] = {}
        self.dropped: list[str] = []

    def get(self, key: str) -> bytes | None:
        entry = self.entries.get(key)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def put(self, key: str, value: bytes, ttl_seconds: float, tag: str | None = None) -> None:
        if ttl_seconds > 0:
            self.entries[key] = (value, self._clock() + ttl_seconds, tag)

    def discard(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            self.dropped.append(key)

    def discard_tag(self, tag: str) -> int:
        tagged = [key for key, (_, _, t) in self.entries.items() if t == tag]
        for key in tagged:
            self.discard(key)
        return len(tagged)

    def clear(self) -> None:
        self.dropped.extend(self.entries)
        self.entries.clear()
