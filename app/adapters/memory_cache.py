"""L1: the in-process cache of one API process (LRU, bounded by entries and by bytes, TTLs).

Hand-written rather than `cachetools`: its caches take one bound (count *or* a size
function), one TTL for all entries (or a callable), and have no way to drop a group of
entries at once; we need both bounds, a TTL per entry and "drop everything of this
series" when a publication changes it. An `OrderedDict` gives O(1) LRU in C.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

# Per-entry bookkeeping beyond key and value (dict slot, tuple, timestamps), so the byte
# bound tracks real memory rather than payload alone.
ENTRY_OVERHEAD_BYTES = 200


class _Entry(NamedTuple):
    value: bytes
    expires_at: float
    size: int
    tag: str | None


class MemoryCache:
    """LRU over at most `max_entries` entries and `max_bytes` bytes; each entry has a TTL.

    An entry may carry a tag (a series id) so `discard_tag` drops all of them at once.
    Not thread-safe: one per event loop.
    """

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("L1 bounds must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        """The live value, marked most recently used; None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    def put(self, key: str, value: bytes, ttl_seconds: float, tag: str | None = None) -> None:
        """Store, evicting least recently used entries until both bounds hold."""
        size = len(key) + len(value) + ENTRY_OVERHEAD_BYTES
        if ttl_seconds <= 0 or size > self.max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = _Entry(value, self._clock() + ttl_seconds, size, tag)
        self.bytes += size
        if tag is not None:
            self._tags.setdefault(tag, set()).add(key)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))
            self.evictions += 1

    def discard(self, key: str) -> None:
        """Drop one entry if present."""
        if key in self._entries:
            self._remove(key)

    def discard_tag(self, tag: str) -> int:
        """Drop every entry carrying `tag`; return how many."""
        dropped = 0
        for key in self._tags.pop(tag, ()):
            entry = self._entries.pop(key, None)
            if entry is not None:
                self.bytes -= entry.size
                dropped += 1
        return dropped

    def clear(self) -> None:
        self._entries.clear()
        self._tags.clear()
        self.bytes = 0

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
        if entry.tag is not None:
            keys = self._tags.get(entry.tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[entry.tag]
