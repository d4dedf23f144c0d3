"""Workload data for the load tests: series, sources, snaps, and what each source does.

Everything is a pure function of the workload parameters and the seed, so every Locust
process (and the seeding step) derives the same data without talking to each other:

- `Workload`: N series x M sources, snaps every `snap_seconds`, shares of outliers, late
  and missing sources, Zipf exponent of read popularity, batch size.
- `fate(series, snap, source)`: `on_time`, `outlier` (on time, 200 bps away from the
  others: excluded by the default 50 bps tolerance), `late` (posted after the window:
  creates version N+1) or `missing` (never posted: the scheduler closes the window).
  Decided by a keyed hash, so it is stable across processes and runs. The first
  `sources // 2 + 1` sources (a strict majority, the series' `min_sources`) are always on
  time and agree, so every snap can be published from on-time data whatever the others
  do; the shares, over all sources, fall on the others.
- `observation(...)`: the request item, with a value that is a deterministic function of
  (series, snap, source), so re-posting it is a duplicate (idempotent), never a conflict.
- `ZipfSampler`: rank k has probability proportional to 1 / k**s; sampled with a
  precomputed CDF and bisect (O(log N) per draw). Rank 1 is series 0.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Fate = Literal["on_time", "outlier", "late", "missing"]

OUTLIER_BPS = 200.0
_UNIT = float(2**64)


@dataclass(frozen=True)
class Workload:
    """The generated population and its behaviour (every field is a CLI/env option)."""

    prefix: str = "LT"
    series: int = 200
    sources: int = 5
    snap_seconds: int = 60
    seed_snaps: int = 3
    outlier_share: float = 0.02
    late_share: float = 0.05
    missing_share: float = 0.03
    zipf_s: float = 1.0
    batch_size: int = 100
    seed: int = 42

    def __post_init__(self) -> None:
        if self.series < 1 or self.sources < 1 or self.snap_seconds < 1 or self.batch_size < 1:
            raise ValueError("series, sources, snap_seconds and batch_size must be >= 1")
        shares = (self.outlier_share, self.late_share, self.missing_share)
        if any(s < 0 for s in shares) or sum(shares) * self._scale > 1:
            raise ValueError(
                "outlier, late and missing shares must be >= 0 and fit the sources that are "
                f"not always on time (sum <= {1 / self._scale:.2f})"
            )
        if self.batch_size > 5000:
            raise ValueError("batch_size must be <= 5000 (the API's limit)")

    @property
    def reliable_sources(self) -> int:
        """Sources always on time and in agreement: a strict majority (from 3 sources on),
        so every snap can be published from on-time data (the seed waits for that)
        whatever the others do. With only half of them reliable, two outliers among 5
        sources (one missing) pulled the median halfway, every source was then more than
        the tolerance from it, and the snap stayed insufficient: a CI smoke run's seed
        waited for it in vain."""
        if self.sources < 3:
            return max(1, self.sources // 2)
        return self.sources // 2 + 1

    @property
    def _scale(self) -> float:
        others = self.sources - self.reliable_sources
        return self.sources / others if others else math.inf

    def series_id(self, index: int) -> str:
        return f"{self.prefix}-{index:05d}"

    @property
    def marker_id(self) -> str:
        """The series a completed seed publishes last (live ingestion never posts it)."""
        return f"{self.prefix}-SEED"

    def marker(self, snap: datetime, source: int) -> dict[str, Any]:
        """One observation of the marker series: 100.0 from every source, on time."""
        return {
            "reference_data_id": self.marker_id,
            "source": self.source_name(source),
            "snap": stamp(snap),
            "value": 100.0,
            "observed_at": stamp(snap + timedelta(milliseconds=100)),
        }

    def source_name(self, index: int) -> str:
        return f"src{index}"

    @property
    def source_names(self) -> list[str]:
        return [self.source_name(j) for j in range(self.sources)]

    def series_config(self) -> dict[str, Any]:
        """The configuration the seed step PUTs: every source expected, a majority needed."""
        return {
            "expected_sources": self.source_names,
            "min_sources": self.reliable_sources,
            "method": "median",
            "tolerance_bps": 50.0,
            "window_seconds": self.snap_seconds,
        }

    # -- time ------------------------------------------------------------------------------

    def snap_at(self, when: datetime) -> datetime:
        """The snap `when` falls in (snaps are aligned to the epoch, every snap_seconds)."""
        epoch = int(when.timestamp())
        return datetime.fromtimestamp(epoch - epoch % self.snap_seconds, UTC)

    def seed_snap_times(self, now: datetime) -> list[datetime]:
        """The `seed_snaps` snaps before the current one, oldest first (windows closed)."""
        current = self.snap_at(now)
        step = timedelta(seconds=self.snap_seconds)
        return [current - step * k for k in range(self.seed_snaps, 0, -1)]

    # -- what each source does -------------------------------------------------------------

    def _uniform(self, *parts: object) -> float:
        key = "|".join(str(p) for p in (self.seed, *parts)).encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / _UNIT

    def fate(self, series: int, snap: datetime, source: int) -> Fate:
        """The configured shares hold over all sources; they fall on the unreliable ones."""
        if source < self.reliable_sources:
            return "on_time"
        u = self._uniform("fate", series, int(snap.timestamp()), source) / self._scale
        if u < self.missing_share:
            return "missing"
        if u < self.missing_share + self.late_share:
            return "late"
        if u < self.missing_share + self.late_share + self.outlier_share:
            return "outlier"
        return "on_time"

    def observation(self, series: int, snap: datetime, source: int) -> dict[str, Any]:
        """The request item of one source for one (series, snap)."""
        base = 100.0 + (series % 997) * 1.5
        drift = 1 + 0.001 * ((int(snap.timestamp()) // self.snap_seconds) % 20 - 10)
        noise = (self._uniform("value", series, int(snap.timestamp()), source) - 0.5) * 10e-4
        value = base * drift * (1 + noise)  # within +-5 bps of the others
        if self.fate(series, snap, source) == "outlier":
            value *= 1 + OUTLIER_BPS / 10_000
        observed = snap + timedelta(milliseconds=100 + 50 * source)
        return {
            "reference_data_id": self.series_id(series),
            "source": self.source_name(source),
            "snap": stamp(snap),
            "value": round(value, 6),
            "observed_at": stamp(observed),
        }

    def items(self, snap: datetime, fates: frozenset[Fate]) -> Iterator[dict[str, Any]]:
        """Every observation of `snap` whose fate is in `fates`, series by series."""
        for series, source in itertools.product(range(self.series), range(self.sources)):
            if self.fate(series, snap, source) in fates:
                yield self.observation(series, snap, source)


ON_TIME: frozenset[Fate] = frozenset({"on_time", "outlier"})
LATE: frozenset[Fate] = frozenset({"late"})


def stamp(ts: datetime) -> str:
    """RFC 3339 UTC with `Z`, as the API writes it."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class LivePlan:
    """What ingestion users post during the run: the current snap's sources that are on
    time, plus the previous snap's late sources; cycled, so once a snap's plan is used up
    the same items are re-sent (duplicates, as real retries are)."""

    def __init__(self, workload: Workload, start: int = 0) -> None:
        self._workload = workload
        self._snap: datetime | None = None
        self._items: list[dict[str, Any]] = []
        self._cursor = start

    def take(self, count: int, now: datetime) -> list[dict[str, Any]]:
        snap = self._workload.snap_at(now)
        if snap != self._snap:
            previous = snap - timedelta(seconds=self._workload.snap_seconds)
            self._items = [
                *self._workload.items(snap, ON_TIME),
                *self._workload.items(previous, LATE),
            ]
            self._snap = snap
        if not self._items:
            return []
        out = []
        for _ in range(count):
            out.append(self._items[self._cursor % len(self._items)])
            self._cursor += 1
        return out


class ZipfSampler:
    """Indices 0..n-1 with P(k) proportional to 1 / (k + 1) ** s: a CDF and bisect."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        total = sum(weights)
        self._cdf = list(itertools.accumulate(w / total for w in weights))
        self._cdf[-1] = 1.0
        self._rng = rng

    def __call__(self) -> int:
        return bisect.bisect_left(self._cdf, self._rng.random())

    def probability(self, k: int) -> float:
        return self._cdf[k] - (self._cdf[k - 1] if k else 0.0)
