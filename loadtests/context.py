"""Per-process state the simulated users share: workload, seeded snaps, samplers, headers.

Set up once per Locust process (`@events.init` in the locustfile). The seeded snaps are
filled by the seed step on the master/standalone process; a distributed worker process
discovers them from the API the first time a reader needs them.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from loadtests.auth import auth_headers
from loadtests.data import LivePlan, Workload, ZipfSampler
from loadtests.seed import Seeded, discover


@dataclass
class LoadContext:
    workload: Workload
    host: str
    user_rps: float
    headers: dict[str, str] = field(default_factory=auth_headers)
    seeded: Seeded | None = None
    rng: random.Random = field(init=False)
    zipf: ZipfSampler = field(init=False)
    plan: LivePlan = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.workload.seed)
        self.zipf = ZipfSampler(self.workload.series, self.workload.zipf_s, self.rng)
        # Each process starts its ingestion cursor elsewhere, so processes do not all
        # post the same items first.
        self.plan = LivePlan(self.workload, start=random.SystemRandom().randrange(1 << 30))

    def readable(self) -> Seeded:
        """The seeded snaps; discovered from the API on first use when not seeded here."""
        if self.seeded is None:
            with self._lock:
                if self.seeded is None:
                    self.seeded = discover(
                        self.host, self.workload, headers=self.headers, now=datetime.now(UTC)
                    )
        return self.seeded


_current: LoadContext | None = None


def install(context: LoadContext) -> None:
    global _current
    _current = context


def current() -> LoadContext:
    if _current is None:
        raise RuntimeError("the load context is set up by the locustfile's init hook")
    return _current
