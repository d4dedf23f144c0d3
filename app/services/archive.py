"""The lake archive: every closed hour of the database, written once to the S3 lake.

An hour is closed once it ended at least `settle` ago: the longest reconciliation window
of any series plus a grace for late observations (after that nothing new is expected for
its snaps). For each closed hour, oldest first, starting at the oldest hour with data:

1. read its official values and observations (by `snap`) and audit records (by `at`)
   from one database snapshot, as the lake's objects and, per dataset, a row count and
   an order-independent fingerprint;
2. compare with the hour's newest manifest: equal, nothing to do; none, generation 1;
   different (a late correction), generation n+1 with `supersedes` n;
3. create the generation's objects (conditional: a key holding the same bytes is a write
   done before, e.g. by a run that crashed before its manifest), then its manifest, last;
4. record the hour in `lake_hours`.

A crash anywhere leaves either no manifest for the generation (invisible; the next run
writes the same objects again, or, when the database changed meanwhile and a key holds
other bytes, moves on to the next generation number) or a complete generation. A re-run
never writes a second copy of a row.

Archived hours are re-checked for late corrections: an hour of the last
`recheck_hours` with a version or an observation stored at or after its `archived_at`
(the start of the oldest transaction open when its export's snapshot was taken, so a
row the export could not see is never missed) is exported again and, when its
fingerprints changed, written as a new generation; unchanged, its `archived_at` moves
up to the new export's.

`verify(hour)` compares the database's rows of an archived hour with its newest
manifest (counts and fingerprints) and records the result (`lake_hours.verified_at`):
retention drops only verified hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import msgspec

from app.domain.lake import (
    AUDIT,
    HOUR,
    DatasetExport,
    HourExport,
    Manifest,
    ManifestObject,
    ObjectConflict,
    audit_key,
    closed_hours,
    hour_object_key,
    hour_of,
)

_log = logging.getLogger("qis.lake.archive")

HourState = Literal["archived", "corrected", "unchanged"]
# Generation numbers tried past the newest manifest when keys of an unfinished one hold
# other bytes (a crash, then a change to the hour): each attempt is one more number.
MAX_GENERATION_ATTEMPTS = 5


class ArchiveSource(Protocol):
    """The database side (`PostgresArchiveSource` in app/adapters/postgres/archive.py)."""

    async def export_hour(self, hour: datetime, *, encode: bool) -> HourExport: ...

    async def oldest_data(self) -> datetime | None: ...

    async def newest_archived(self) -> datetime | None: ...

    async def archived(self, hour: datetime) -> tuple[int, datetime] | None: ...

    async def archived_since(self, since: datetime) -> list[tuple[datetime, datetime]]: ...

    async def changed_since(self, hour: datetime, since: datetime) -> bool: ...

    async def record_archived(self, hour: datetime, generation: int, as_of: datetime) -> None: ...

    async def record_verified(self, hour: datetime, ok: bool) -> None: ...

    async def max_window_seconds(self) -> int: ...


class LakeStore(Protocol):
    """The lake bucket (`S3Lake` in app/adapters/s3_lake.py). Blocking calls: the archive
    runs them in a thread."""

    def check(self) -> None:
        """Raise unless the lake answers."""
        ...

    def create(self, key: str, data: bytes) -> bool: ...

    def newest_manifest(self, hour: datetime) -> Manifest | None: ...

    def put_manifest(self, manifest: Manifest) -> bool: ...


class ArchiveMetrics(Protocol):
    """What the archive records (`QisMetrics` in app/telemetry/metrics.py)."""

    def lake_hour_archived(self, state: str, rows: int, size: int, seconds: float) -> None: ...

    def lake_archive_failure(self) -> None: ...


class _NoMetrics:
    def lake_hour_archived(self, state: str, rows: int, size: int, seconds: float) -> None:
        return None

    def lake_archive_failure(self) -> None:
        return None


def _no_span(_: datetime) -> AbstractContextManager[None]:
    return nullcontext()


@dataclass(frozen=True)
class ArchivePolicy:
    # Added to the longest reconciliation window: how late observations may still come.
    late_grace: timedelta = timedelta(minutes=10)
    # Hours archived per round at most (a backlog is worked off over several rounds).
    max_hours_per_round: int = 24
    # Archived hours re-checked for late corrections, back from the newest.
    recheck_hours: int = 24


class HourResult(msgspec.Struct, frozen=True, kw_only=True):
    hour: datetime
    generation: int
    state: HourState
    rows: int
    bytes: int
    seconds: float


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Archiver:
    def __init__(
        self,
        source: ArchiveSource,
        lake: LakeStore,
        policy: ArchivePolicy | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
        metrics: ArchiveMetrics | None = None,
        span: Callable[[datetime], AbstractContextManager[None]] = _no_span,
    ) -> None:
        self.source, self.lake = source, lake
        self.policy = policy or ArchivePolicy()
        self.clock = clock
        self.metrics: ArchiveMetrics = metrics or _NoMetrics()
        self.span = span

    async def settle(self) -> timedelta:
        """How long after its end an hour is closed."""
        window = timedelta(seconds=await self.source.max_window_seconds())
        return window + self.policy.late_grace

    async def due_hours(self, until: datetime | None = None) -> list[datetime]:
        """The closed hours not archived yet, oldest first (all of them: bounded by time)."""
        now = until or self.clock()
        after = await self.source.newest_archived()
        if after is None:
            oldest = await self.source.oldest_data()
            if oldest is None:
                return []
            after = hour_of(oldest) - HOUR
        return list(closed_hours(now, await self.settle(), after))

    async def corrections(self) -> list[datetime]:
        """Archived hours of the recheck span whose rows changed after they were archived."""
        newest = await self.source.newest_archived()
        if newest is None:
            return []
        since = newest - HOUR * (self.policy.recheck_hours - 1)
        changed = []
        for hour, archived_at in await self.source.archived_since(since):
            if await self.source.changed_since(hour, archived_at):
                changed.append(hour)
        return changed

    async def run_round(self, halt: asyncio.Event | None = None) -> list[HourResult]:
        """One scheduler round: late corrections first, then due hours, at most
        `max_hours_per_round` hours in all; `halt` stops it between two hours."""
        # An unreachable lake fails the round before any database work.
        await asyncio.to_thread(self.lake.check)
        budget = self.policy.max_hours_per_round
        hours = (await self.corrections())[:budget]
        hours += (await self.due_hours())[: budget - len(hours)]
        results = []
        for hour in hours:
            if halt is not None and halt.is_set():
                break
            results.append(await self.archive_hour(hour))
        return results

    async def archive_hour(self, hour: datetime) -> HourResult:
        """Archive one hour (idempotent); see the module docstring."""
        hour = hour_of(hour)
        started = time.perf_counter()
        with self.span(hour):
            export = await self.source.export_hour(hour, encode=True)
            exports = export.datasets
            summaries = {e.dataset: e.summary for e in exports}
            newest = await asyncio.to_thread(self.lake.newest_manifest, hour)
            if newest is not None and newest.datasets == summaries:
                await self.source.record_archived(hour, newest.generation, export.as_of)
                return self._done(hour, newest.generation, "unchanged", exports, 0, started)
            base = newest.generation if newest is not None else 0
            for generation in range(base + 1, base + 1 + MAX_GENERATION_ATTEMPTS):
                try:
                    objects = await self._write_objects(hour, generation, exports)
                except ObjectConflict as exc:
                    _log.warning(
                        "lake generation left unfinished with other content; next number",
                        extra={"hour": hour.isoformat(), "generation": generation, "key": exc.key},
                    )
                    continue
                manifest = Manifest(
                    hour=hour,
                    generation=generation,
                    created_at=self.clock(),
                    datasets=summaries,
                    objects=tuple(objects),
                    supersedes=newest.generation if newest is not None else None,
                )
                await asyncio.to_thread(self.lake.put_manifest, manifest)
                await self.source.record_archived(hour, generation, export.as_of)
                size = sum(o.bytes for o in objects)
                state: HourState = "archived" if newest is None else "corrected"
                return self._done(hour, generation, state, exports, size, started)
            raise ObjectConflict(f"{hour.isoformat()} generations {base + 1}..{generation}")

    async def _write_objects(
        self, hour: datetime, generation: int, exports: list[DatasetExport]
    ) -> list[ManifestObject]:
        objects = []
        for export in exports:
            if export.data is None:
                continue
            key = (
                audit_key(hour, generation)
                if export.dataset == AUDIT
                else hour_object_key(export.dataset, hour, generation)
            )
            await asyncio.to_thread(self.lake.create, key, export.data)
            objects.append(
                ManifestObject(
                    key=key,
                    dataset=export.dataset,
                    series=(
                        export.first_series
                        if export.first_series is not None
                        and export.first_series == export.last_series
                        else None
                    ),
                    rows=export.summary.rows,
                    bytes=len(export.data),
                    sha256=hashlib.sha256(export.data).hexdigest(),
                    first_series=export.first_series,
                    last_series=export.last_series,
                )
            )
        return objects

    def _done(
        self,
        hour: datetime,
        generation: int,
        state: HourState,
        exports: list[DatasetExport],
        size: int,
        started: float,
    ) -> HourResult:
        seconds = time.perf_counter() - started
        rows = sum(e.summary.rows for e in exports)
        self.metrics.lake_hour_archived(state, rows, size, seconds)
        _log.info(
            "lake hour",
            extra={
                "hour": hour.isoformat(),
                "generation": generation,
                "state": state,
                "rows": rows,
                "bytes": size,
                "seconds": round(seconds, 3),
            },
        )
        return HourResult(
            hour=hour, generation=generation, state=state, rows=rows, bytes=size, seconds=seconds
        )

    async def verify(self, hour: datetime) -> bool:
        """Whether the database's rows of `hour` are exactly what its newest manifest
        says (counts and fingerprints); recorded in `lake_hours.verified_at` (set when
        true, cleared when false). False for an hour that is not archived."""
        hour = hour_of(hour)
        newest = await asyncio.to_thread(self.lake.newest_manifest, hour)
        if newest is None or await self.source.archived(hour) is None:
            return False
        export = await self.source.export_hour(hour, encode=False)
        ok = {e.dataset: e.summary for e in export.datasets} == newest.datasets
        await self.source.record_verified(hour, ok)
        return ok
