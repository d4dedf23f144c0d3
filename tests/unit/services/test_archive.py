"""The archive service with in-memory fakes of the database and the lake."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import pytest

from app.domain.lake import (
    AUDIT,
    HOUR,
    OBSERVATIONS,
    OFFICIAL_VALUES,
    DatasetExport,
    DatasetSummary,
    HourExport,
    Manifest,
    ObjectConflict,
    manifest_key,
)
from app.services.archive import ArchivePolicy, Archiver
from app.services.schedule import SchedulePolicy, Scheduler

H0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


class FakeSource:
    def __init__(self) -> None:
        # hour -> dataset -> rows (strings: each a row)
        self.rows: dict[datetime, dict[str, list[str]]] = {}
        self.hours: dict[datetime, tuple[int, datetime]] = {}
        self.verified: dict[datetime, bool] = {}
        self.window = 60
        self.clock = H0
        self.changed: set[datetime] = set()
        # hour -> when a row of it was last stored (the source's clock then)
        self.stored: dict[datetime, datetime] = {}
        self.gaps_checked: datetime | None = None
        self.searches = 0
        self.horizon: dict[str, datetime] = {}

    def add(self, hour: datetime, dataset: str, row: str) -> None:
        self.rows.setdefault(hour, {}).setdefault(dataset, []).append(row)
        self.changed.add(hour)
        self.stored[hour] = self.clock

    async def export_hour(self, hour: datetime, *, encode: bool) -> HourExport:
        out = []
        for dataset in (OFFICIAL_VALUES, OBSERVATIONS, AUDIT):
            rows = sorted(self.rows.get(hour, {}).get(dataset, []))
            summary = DatasetSummary(rows=len(rows), fingerprint="|".join(rows))
            data = "\n".join(rows).encode() if encode and rows else None
            out.append(DatasetExport(dataset=dataset, summary=summary, data=data))
        return HourExport(datasets=out, as_of=self.clock)

    async def next_data_hour(self, after: datetime | None, before: datetime) -> datetime | None:
        self.searches += 1
        return min(
            (h for h in self.rows if (after is None or h > after) and h < before), default=None
        )

    async def late_rows(self, until: datetime, limit: int) -> tuple[list[datetime], datetime]:
        since = self.gaps_checked or min((t for _, t in self.hours.values()), default=None)
        if since is None or limit <= 0:
            return [], self.clock
        late = sorted(
            h for h, t in self.stored.items() if h < until and h not in self.hours and t >= since
        )
        return late[:limit], self.clock

    async def record_gaps_checked(self, as_of: datetime) -> None:
        self.gaps_checked = max(as_of, self.gaps_checked or as_of)

    async def retained_from(self) -> dict[str, datetime]:
        return self.horizon

    async def newest_archived(self) -> datetime | None:
        return max(self.hours, default=None)

    async def archived(self, hour: datetime) -> tuple[int, datetime] | None:
        return self.hours.get(hour)

    async def changed_hours(self, since: datetime) -> list[datetime]:
        return sorted(h for h in self.hours if h >= since and h in self.changed)

    async def record_archived(self, hour: datetime, generation: int, as_of: datetime) -> None:
        self.hours[hour] = (generation, as_of)
        self.changed.discard(hour)

    async def record_verified(self, hour: datetime, ok: bool) -> None:
        self.verified[hour] = ok

    async def max_window_seconds(self) -> int:
        return self.window


class FakeLake:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.log: list[str] = []
        self.fail: Exception | None = None

    def check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def create(self, key: str, data: bytes) -> bool:
        if self.fail is not None:
            raise self.fail
        self.log.append(key)
        if key in self.objects:
            if self.objects[key] != data:
                raise ObjectConflict(key)
            return False
        self.objects[key] = data
        return True

    def newest_manifest(self, hour: datetime) -> Manifest | None:
        if self.fail is not None:
            raise self.fail
        generations = [g for g in range(1, 10) if manifest_key(hour, g) in self.objects]
        if not generations:
            return None
        key = manifest_key(hour, generations[-1])
        return msgspec.json.decode(self.objects[key], type=Manifest)

    def put_manifest(self, manifest: Manifest) -> bool:
        return self.create(
            manifest_key(manifest.hour, manifest.generation), msgspec.json.encode(manifest)
        )


def archiver(source: FakeSource, lake: FakeLake, now: datetime) -> Archiver:
    return Archiver(
        source, lake, ArchivePolicy(late_grace=timedelta(minutes=10)), clock=lambda: now
    )


async def test_due_hours_start_at_the_oldest_data_and_wait_for_the_settle_time() -> None:
    source, lake = FakeSource(), FakeLake()
    assert await archiver(source, lake, H0).due_hours() == []  # no data at all
    source.add(H0 + timedelta(minutes=20), OBSERVATIONS, "a")
    source.rows[H0] = source.rows.pop(H0 + timedelta(minutes=20))  # keyed by hour
    end = H0 + HOUR
    job = archiver(source, lake, end + timedelta(minutes=10, seconds=59))
    assert await job.due_hours() == []  # 60 s window + 10 min grace not over
    job = archiver(source, lake, end + timedelta(minutes=11))
    assert await job.due_hours() == [H0]
    source.window = 3600
    assert await job.due_hours() == []


async def test_objects_are_written_before_the_manifest_and_a_rerun_writes_nothing() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(H0, OBSERVATIONS, "o1")
    source.add(H0, OFFICIAL_VALUES, "v1")
    job = archiver(source, lake, H0 + 3 * HOUR)
    result = await job.archive_hour(H0)
    assert (result.generation, result.state, result.rows) == (1, "archived", 2)
    assert lake.log[-1] == manifest_key(H0, 1)
    assert len(lake.log) == 3  # two objects (no audit rows: no object), then the manifest
    before = dict(lake.objects)
    again = await job.archive_hour(H0)
    assert again.state == "unchanged"
    assert lake.objects == before
    assert source.hours[H0][0] == 1


async def test_a_change_makes_the_next_generation_superseding_the_last() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(H0, OBSERVATIONS, "o1")
    job = archiver(source, lake, H0 + 3 * HOUR)
    await job.run_round()
    source.add(H0, OBSERVATIONS, "o2")
    assert await job.corrections() == [H0]
    [result] = await job.run_round()
    assert (result.generation, result.state) == (2, "corrected")
    manifest = lake.newest_manifest(H0)
    assert manifest is not None
    assert manifest.supersedes == 1
    assert manifest.datasets[OBSERVATIONS].rows == 2


async def test_a_round_is_bounded_and_stops_on_halt() -> None:
    source, lake = FakeSource(), FakeLake()
    for h in range(5):
        source.add(H0 + h * HOUR, AUDIT, f"a{h}")
    job = Archiver(source, lake, ArchivePolicy(max_hours_per_round=2), clock=lambda: H0 + 10 * HOUR)
    assert [r.hour for r in await job.run_round()] == [H0, H0 + HOUR]
    halt = asyncio.Event()
    halt.set()
    assert await job.run_round(halt) == []
    assert [r.hour for r in await job.run_round()] == [H0 + 2 * HOUR, H0 + 3 * HOUR]


async def test_verify_records_the_comparison() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(H0, OBSERVATIONS, "o1")
    job = archiver(source, lake, H0 + 3 * HOUR)
    assert await job.verify(H0) is False
    await job.archive_hour(H0)
    assert await job.verify(H0) is True
    assert source.verified[H0] is True
    source.add(H0, OBSERVATIONS, "o2")
    assert await job.verify(H0) is False
    assert source.verified[H0] is False


class Recording:
    def __init__(self) -> None:
        self.failures = 0
        self.hours: list[tuple[str, int, int]] = []

    def lake_hour_archived(self, state: str, rows: int, size: int, seconds: float) -> None:
        self.hours.append((state, rows, size))

    def lake_archive_failure(self) -> None:
        self.failures += 1


async def test_an_unreachable_lake_is_counted_and_retried_by_the_scheduler() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(H0, OBSERVATIONS, "o1")
    metrics = Recording()
    job = Archiver(source, lake, ArchivePolicy(), clock=lambda: H0 + 3 * HOUR, metrics=metrics)
    unused: Any = None
    scheduler = Scheduler(
        SchedulePolicy(),
        unused,
        unused,
        unused,
        unused,
        unused,
        transient=lambda _: True,
        archiver=job,
    )
    lake.fail = ConnectionError("S3 down")
    await scheduler.archive(job)  # does not raise
    assert scheduler.archive_failures == 1
    assert metrics.failures == 1
    assert source.hours == {}
    lake.fail = None
    await scheduler.archive(job)
    assert scheduler.archive_failures == 1
    assert cast(tuple[int, datetime], source.hours[H0])[0] == 1
    assert metrics.hours[0] == ("archived", 1, len(b"o1"))


async def test_a_conflicting_unfinished_generation_is_skipped_not_overwritten() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(H0, OBSERVATIONS, "o1")
    job = archiver(source, lake, H0 + 3 * HOUR)
    leftover = "reference-data/2026/03/01/10/observations-g0001.parquet"
    lake.objects[leftover] = b"from a run that crashed before its manifest"
    result = await job.archive_hour(H0)
    assert result.generation == 2
    assert lake.objects[leftover] == b"from a run that crashed before its manifest"
    manifest = lake.newest_manifest(H0)
    assert manifest is not None
    assert manifest.supersedes is None
    with pytest.raises(ObjectConflict):
        lake.create(leftover, b"other")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def test_the_archive_goes_from_an_hour_with_rows_to_the_next() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(EPOCH, OBSERVATIONS, "o1970")  # a snap of 1970 is valid client input
    source.add(H0, OBSERVATIONS, "o")
    job = archiver(source, lake, H0 + 3 * HOUR)
    assert await job.due_hours() == [EPOCH, H0]
    results = await job.run_round()
    assert [(r.hour, r.generation, r.state) for r in results] == [
        (EPOCH, 1, "archived"),
        (H0, 1, "archived"),
    ]
    assert sorted(source.hours) == [EPOCH, H0]
    assert sorted(k for k in lake.objects if k.startswith("manifests/")) == [
        manifest_key(EPOCH, 1),
        manifest_key(H0, 1),
    ]
    source.searches = 0
    assert await job.run_round() == []
    assert source.searches == 1  # one search finds nothing more, whatever the distance
    assert source.gaps_checked == H0  # set when nothing was archived yet


async def test_due_hours_are_bounded_by_the_round() -> None:
    source, lake = FakeSource(), FakeLake()
    for h in range(30):
        source.add(H0 - h * 1000 * HOUR, AUDIT, f"a{h}")
    job = Archiver(source, lake, ArchivePolicy(max_hours_per_round=4), clock=lambda: H0 + 2 * HOUR)
    due = await job.due_hours()
    assert due == [H0 - h * 1000 * HOUR for h in range(29, 25, -1)]
    assert source.searches == 4
    assert len(await job.due_hours(limit=100)) == 30


async def test_a_late_row_in_a_skipped_hour_is_archived_the_next_round() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(H0 - 10 * HOUR, OBSERVATIONS, "early")
    source.add(H0, OBSERVATIONS, "o")
    job = archiver(source, lake, H0 + 3 * HOUR)
    await job.run_round()
    assert sorted(source.hours) == [H0 - 10 * HOUR, H0]
    first_check = source.gaps_checked
    assert first_check is not None

    source.clock = H0 + 2 * HOUR
    source.add(H0 - 5 * HOUR, OFFICIAL_VALUES, "late")  # an hour skipped as empty
    assert await job.corrections() == []  # not an archived hour: not a correction
    [result] = await job.run_round()
    assert (result.hour, result.generation, result.state, result.rows) == (
        H0 - 5 * HOUR,
        1,
        "archived",
        1,
    )
    assert source.gaps_checked == H0 + 2 * HOUR  # every late row found was archived
    assert await job.run_round() == []


async def test_the_check_of_skipped_hours_waits_until_all_of_them_are_archived() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(H0, OBSERVATIONS, "o")
    job = Archiver(source, lake, ArchivePolicy(max_hours_per_round=2), clock=lambda: H0 + 3 * HOUR)
    await job.run_round()
    checked = source.gaps_checked
    source.clock = H0 + 2 * HOUR
    for h in (3, 2, 1):
        source.add(H0 - h * HOUR, OBSERVATIONS, f"late{h}")
    assert [r.hour for r in await job.run_round()] == [H0 - 3 * HOUR, H0 - 2 * HOUR]
    assert source.gaps_checked == checked  # the budget was used up: more may be there
    assert [r.hour for r in await job.run_round()] == [H0 - HOUR]
    assert source.gaps_checked == H0 + 2 * HOUR
    assert await job.run_round() == []


async def test_verify_of_an_hour_without_manifest_is_whether_it_has_rows() -> None:
    source, lake = FakeSource(), FakeLake()
    job = archiver(source, lake, H0 + 3 * HOUR)
    assert await job.verify(H0) is True  # nothing in the database, nothing in the lake
    assert source.verified == {}  # no lake_hours row to record it in
    source.add(H0, OBSERVATIONS, "o1")
    assert await job.verify(H0) is False  # rows the lake does not hold


async def test_verify_leaves_out_a_dataset_retention_dropped() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(H0, OBSERVATIONS, "o1")
    source.add(H0, AUDIT, "a1")
    job = archiver(source, lake, H0 + 3 * HOUR)
    await job.archive_hour(H0)
    del source.rows[H0][AUDIT]  # its day dropped from the database
    assert await job.verify(H0) is False
    source.horizon = {AUDIT: H0 + 24 * HOUR}
    assert await job.verify(H0) is True
    source.add(H0, OBSERVATIONS, "o2")
    assert await job.verify(H0) is False


async def test_a_correction_after_a_drop_carries_the_dropped_dataset_over() -> None:
    source, lake = FakeSource(), FakeLake()
    source.add(H0, OBSERVATIONS, "o1")
    source.add(H0, AUDIT, "a1")
    job = archiver(source, lake, H0 + 3 * HOUR)
    first = await job.archive_hour(H0)
    before = lake.newest_manifest(H0)
    assert before is not None
    del source.rows[H0][AUDIT]  # retention dropped the audit day
    source.horizon = {AUDIT: H0 + 24 * HOUR}
    assert (await job.archive_hour(H0)).state == "unchanged"
    source.add(H0, OBSERVATIONS, "o2")
    result = await job.archive_hour(H0)
    assert (first.generation, result.generation, result.state) == (1, 2, "corrected")
    manifest = lake.newest_manifest(H0)
    assert manifest is not None
    assert manifest.datasets[AUDIT].rows == 1
    assert manifest.datasets[OBSERVATIONS].rows == 2
    assert manifest.objects_of(AUDIT) == before.objects_of(AUDIT)  # generation 1's object
    assert await job.verify(H0) is True
