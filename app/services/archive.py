"""The lake archive: every closed hour of the database that holds rows, written once to
the S3 lake.

An hour is closed once it ended at least `settle` ago: the longest reconciliation window
of any series plus a grace for late observations (after that nothing new is expected for
its snaps). An hour's rows are its official values and observations (by `snap`) and its
audit records (by `at`).

**Which hours.** The archive goes from one hour with rows to the next: after the newest
hour of `lake_hours` (none yet: from the beginning), the next closed hour holding a row of
any dataset, found with one descent of each table's time index whatever the distance (a
snap of 1970 and one of today are two hours to archive, not 500,000). An hour without
rows gets no generation, no manifest and no `lake_hours` row: in the lake, "no manifest"
before the newest archived hour means "no rows". For each hour, oldest first:

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

**Late corrections to archived hours.** An hour of the last `recheck_hours` with a
version or an observation stored at or after its `archived_at` (one query for the whole
span) is exported again and, when its fingerprints changed, written as a new generation;
unchanged, its `archived_at` moves up to the new export's. `archived_at` is the start of
the oldest transaction open when its export's snapshot was taken, so a row the export
could not see is never missed.

**Late rows in skipped hours.** `lake_archive.gaps_checked_at` (G) says: every row stored
before G of an hour up to the newest archived one is in an hour of `lake_hours`. Each
round reads, in one snapshot, the start T of the oldest transaction open then and the
hours without a `lake_hours` row, before the newest archived hour's end, holding a row
stored at or after G (versions by `recorded_at`, observations by `stored_at`, audit
records by `at`: each the database clock of a transaction that started before it was
visible); those hours are archived in the round, and when all of them were (fewer than
the round's budget found, none failed), G moves to T. A skip to a next hour with rows is
decided by a read taken after G's T, so the hours it skips held no row stored before G.
Rows of an hour skipped as empty are thus archived the round after they are stored, at
any distance back; corrections to an archived hour older than the recheck span are not
(`qis lake archive --from H --to H`; verification and retention catch them).

A generation written after retention dropped one dataset's day of the hour (a
correction to another dataset) carries that dataset's objects and summary over from the
newest manifest: the lake keeps what only it holds.

`verify(hour)` compares the database's rows of an archived hour with its newest
manifest (counts and fingerprints; a dataset whose day retention dropped is left out)
and records the result (`lake_hours.verified_at`):
retention drops only verified hours, or hours whose day partition holds no row. An hour
with no manifest and no rows in the database verifies (the lake holds what the database
holds: nothing); with rows, it does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
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
    closed_before,
    hour_object_key,
    hour_of,
)

_log = logging.getLogger("qis.lake.archive")

HourState = Literal["archived", "corrected", "unchanged"]
# Generation numbers tried past the newest manifest when keys of an unfinished one hold
# other bytes (a crash, then a change to the hour): each attempt is one more number.
MAX_GENERATION_ATTEMPTS = 5
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


class ArchiveSource(Protocol):
    """The database side (`PostgresArchiveSource` in app/adapters/postgres/archive.py)."""

    async def export_hour(self, hour: datetime, *, encode: bool) -> HourExport: ...

    async def next_data_hour(self, after: datetime | None, before: datetime) -> datetime | None: ...

    async def late_rows(self, until: datetime, limit: int) -> tuple[list[datetime], datetime]: ...

    async def record_gaps_checked(self, as_of: datetime) -> None: ...

    async def newest_archived(self) -> datetime | None: ...

    async def archived(self, hour: datetime) -> tuple[int, datetime] | None: ...

    async def changed_hours(self, since: datetime) -> list[datetime]: ...

    async def record_archived(self, hour: datetime, generation: int, as_of: datetime) -> None: ...

    async def record_verified(self, hour: datetime, ok: bool) -> None: ...

    async def retained_from(self) -> dict[str, datetime]: ...

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

    async def due_hours(self, limit: int | None = None) -> list[datetime]:
        """The next closed hours holding rows after the newest archived hour, oldest first:
        at most `limit` (default: the round's `max_hours_per_round`)."""
        limit = self.policy.max_hours_per_round if limit is None else limit
        before = closed_before(self.clock(), await self.settle())
        return [
            hour
            async for hour in self.data_hours(await self.source.newest_archived(), before, limit)
        ]

    async def data_hours(
        self, after: datetime | None, before: datetime, limit: int
    ) -> AsyncIterator[datetime]:
        """The hours after `after` (None: from the beginning) and before `before` holding
        rows, oldest first, at most `limit`: one indexed query each, none for empty hours."""
        for _ in range(max(limit, 0)):
            hour = await self.source.next_data_hour(after, before)
            if hour is None:
                return
            yield hour
            after = hour

    async def corrections(self) -> list[datetime]:
        """Archived hours of the recheck span whose rows changed after they were archived."""
        newest = await self.source.newest_archived()
        if newest is None:
            return []
        return await self.source.changed_hours(newest - HOUR * (self.policy.recheck_hours - 1))

    async def run_round(self, halt: asyncio.Event | None = None) -> list[HourResult]:
        """One scheduler round: late corrections and late rows of skipped hours first, then
        due hours, at most `max_hours_per_round` hours in all; `halt` stops it between two
        hours."""
        # An unreachable lake fails the round before any database work.
        await asyncio.to_thread(self.lake.check)
        budget = self.policy.max_hours_per_round
        hours = (await self.corrections())[:budget]
        newest = await self.source.newest_archived()
        wanted = budget - len(hours)
        skipped: list[datetime] = []
        gaps_as_of: datetime | None = None
        if newest is None:
            # Nothing archived, nothing skipped: the check holds from now on, and every
            # skip this round is decided by a read taken after it.
            _, as_of = await self.source.late_rows(_BEGINNING, 0)
            await self.source.record_gaps_checked(as_of)
        elif wanted > 0:
            skipped, as_of = await self.source.late_rows(newest + HOUR, wanted)
            # All of them found (fewer than asked): the check moves once they are archived.
            gaps_as_of = as_of if len(skipped) < wanted else None
        hours += [h for h in skipped if h not in hours]
        hours += await self.due_hours(budget - len(hours))
        results: list[HourResult] = []
        for hour in hours:
            if halt is not None and halt.is_set():
                return results
            results.append(await self.archive_hour(hour))
        if gaps_as_of is not None:
            await self.source.record_gaps_checked(gaps_as_of)
        return results

    async def archive_hour(self, hour: datetime) -> HourResult:
        """Archive one hour (idempotent); see the module docstring."""
        hour = hour_of(hour)
        started = time.perf_counter()
        with self.span(hour):
            export = await self.source.export_hour(hour, encode=True)
            newest = await asyncio.to_thread(self.lake.newest_manifest, hour)
            # A dataset whose day retention dropped keeps the newest generation's rows
            # (its objects and summary carried over): the database no longer has them.
            gone = await self._gone(hour) if newest is not None else set()
            exports = [e for e in export.datasets if e.dataset not in gone]
            summaries = {e.dataset: e.summary for e in exports}
            carried: list[ManifestObject] = []
            if newest is not None:
                summaries |= {d: v for d, v in newest.datasets.items() if d in gone}
                carried = [o for o in newest.objects if o.dataset in gone]
            if newest is not None and newest.datasets == summaries:
                await self.source.record_archived(hour, newest.generation, export.as_of)
                return self._done(hour, newest.generation, "unchanged", exports, 0, started)
            base = newest.generation if newest is not None else 0
            for generation in range(base + 1, base + 1 + MAX_GENERATION_ATTEMPTS):
                try:
                    objects = carried + await self._write_objects(hour, generation, exports)
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
                size = sum(o.bytes for o in objects if o not in carried)
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

    async def _gone(self, hour: datetime) -> set[str]:
        """The datasets whose rows of `hour` retention dropped from the database."""
        return {d for d, t in (await self.source.retained_from()).items() if hour < t}

    async def verify(self, hour: datetime) -> bool:
        """Whether the lake holds exactly the database's rows of `hour`: those of its newest
        manifest (counts and fingerprints), recorded in `lake_hours.verified_at` (set when
        true, cleared when false); for an hour with no manifest and no `lake_hours` row,
        whether the database holds no row of it (nothing to record). False for an hour
        with rows that is not archived."""
        hour = hour_of(hour)
        newest = await asyncio.to_thread(self.lake.newest_manifest, hour)
        archived = await self.source.archived(hour)
        if newest is None or archived is None:
            if newest is not None or archived is not None:
                return False
            export = await self.source.export_hour(hour, encode=False)
            return all(e.summary.rows == 0 for e in export.datasets)
        export = await self.source.export_hour(hour, encode=False)
        # A dataset whose day retention dropped is in the lake alone: nothing to compare.
        gone = await self._gone(hour)
        ok = {e.dataset: e.summary for e in export.datasets if e.dataset not in gone} == {
            d: summary for d, summary in newest.datasets.items() if d not in gone
        }
        await self.source.record_verified(hour, ok)
        return ok
