"""The lake archive on the real stack: PostgreSQL (a database of its own) and the S3
endpoint (a bucket of its own on the moto server)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from app.adapters.lake_formats import read_audit_avro, read_parquet
from app.adapters.postgres.archive import PostgresArchiveSource
from app.adapters.s3_lake import S3Lake
from app.domain.lake import AUDIT, OBSERVATIONS, OFFICIAL_VALUES, Manifest, hour_of
from app.services.archive import ArchivePolicy, Archiver
from app.settings import Settings
from tests.integration.lake_helpers import (
    H1,
    H2,
    add_observations,
    add_version,
    own_lake,
    seed,
)
from tests.stack import REPO

pytestmark = pytest.mark.integration
__all__ = ["own_lake"]

NOW = H2 + timedelta(hours=1, minutes=30)  # H1 and H2 closed, the next hour not


@pytest.fixture
def db(empty_pool: asyncpg.Pool) -> asyncpg.Pool:
    return empty_pool


def archiver(pool: asyncpg.Pool, lake: Any, now: datetime = NOW) -> Archiver:
    return Archiver(
        PostgresArchiveSource(pool, row_group_rows=4),
        lake,
        ArchivePolicy(late_grace=timedelta(minutes=10)),
        clock=lambda: now,
    )


def snapshot(lake: S3Lake) -> dict[str, bytes]:
    return {k: lake.read(k) for k in lake.keys("")}


async def test_archive_writes_closed_hours_once_and_reads_back(
    db: asyncpg.Pool, own_lake: S3Lake
) -> None:
    await seed(db)
    job = archiver(db, own_lake)
    assert await job.due_hours() == [H1, H2]
    first = await job.run_round()
    assert [(r.hour, r.generation, r.state) for r in first] == [
        (H1, 1, "archived"),
        (H2, 1, "archived"),
    ]
    stored = snapshot(own_lake)
    assert sorted(stored) == [
        "audit/2026/01/15/14/audit-g0001.avro",
        "manifests/2026/01/15/14/g0001.json",
        "manifests/2026/01/15/15/g0001.json",
        "reference-data/2026/01/15/14/observations-g0001.parquet",
        "reference-data/2026/01/15/14/official-values-g0001.parquet",
        "reference-data/2026/01/15/15/observations-g0001.parquet",
        "reference-data/2026/01/15/15/official-values-g0001.parquet",
    ]

    # Counts and checksums of the manifest are the objects'.
    manifest = own_lake.manifest(H1, 1)
    assert manifest.datasets[OBSERVATIONS].rows == 18
    assert manifest.datasets[OFFICIAL_VALUES].rows == 6
    assert manifest.datasets[AUDIT].rows == 4
    for obj in manifest.objects:
        data = stored[obj.key]
        assert obj.bytes == len(data)
        assert obj.sha256 == hashlib.sha256(data).hexdigest()
        rows = len(read_audit_avro(data)) if obj.dataset == AUDIT else read_parquet(data).num_rows
        assert rows == obj.rows == manifest.datasets[obj.dataset].rows
    observations = own_lake.manifest(H1, 1).objects_of(OBSERVATIONS)[0]
    assert (observations.first_series, observations.last_series) == ("AAA", "CCC")

    # Rows read back are the database's, once each.
    table = read_parquet(stored["reference-data/2026/01/15/14/official-values-g0001.parquet"])
    assert table.column("reference_data_id").to_pylist() == ["AAA"] * 2 + ["BBB"] * 2 + ["CCC"] * 2
    assert table.column("quality_score").to_pylist() == [0.9] * 6
    assert table.column("sources_used").to_pylist()[0] == ["SRC0", "SRC1"]
    assert table.column("supersedes").to_pylist() == [None] * 6
    obs = read_parquet(stored["reference-data/2026/01/15/14/observations-g0001.parquet"])
    ids = obs.column("observation_id").to_pylist()
    assert len(ids) == len(set(ids)) == 18
    db_ids = {
        r["observation_id"]
        for r in await db.fetch("SELECT observation_id FROM observations WHERE snap < $1", H2)
    }
    assert set(ids) == db_ids
    audit = read_audit_avro(stored["audit/2026/01/15/14/audit-g0001.avro"])
    assert [a["after"] for a in audit] == ['{"v": 1e20}'] * 4

    hours = await db.fetch("SELECT hour, generation FROM lake_hours ORDER BY hour")
    assert [(r["hour"], r["generation"]) for r in hours] == [(H1, 1), (H2, 1)]

    # A re-run: nothing due, and archiving an hour again writes nothing new.
    assert await job.run_round() == []
    again = await job.archive_hour(H1)
    assert (again.generation, again.state) == (1, "unchanged")
    assert snapshot(own_lake) == stored


class CrashAfter:
    """The lake, failing once `creates` objects have been written (a crash mid-hour)."""

    def __init__(self, lake: S3Lake, creates: int) -> None:
        self.lake, self.left = lake, creates

    def create(self, key: str, data: bytes) -> bool:
        if self.left == 0:
            raise ConnectionError("crashed")
        self.left -= 1
        return self.lake.create(key, data)

    def check(self) -> None:
        self.lake.check()

    def newest_manifest(self, hour: datetime) -> Manifest | None:
        return self.lake.newest_manifest(hour)

    def put_manifest(self, manifest: Manifest) -> bool:
        return self.lake.put_manifest(manifest)


async def crash_mid_hour(db: asyncpg.Pool, lake: S3Lake) -> None:
    """Seed, then archive H1 with a crash after its first object."""
    await seed(db)
    with pytest.raises(ConnectionError):
        await archiver(db, CrashAfter(lake, creates=1)).archive_hour(H1)


async def test_a_crash_before_the_manifest_is_completed_by_the_next_run(
    db: asyncpg.Pool, own_lake: S3Lake
) -> None:
    await crash_mid_hour(db, own_lake)
    assert own_lake.generations(H1) == []  # invisible: no manifest
    assert len(own_lake.keys("reference-data/")) == 1
    assert await db.fetchval("SELECT count(*) FROM lake_hours") == 0

    result = await archiver(db, own_lake).archive_hour(H1)
    assert (result.generation, result.state) == (1, "archived")
    manifest = own_lake.manifest(H1, 1)
    assert {o.key for o in manifest.objects} == {
        k for k in own_lake.keys("") if not k.startswith("manifests/")
    }
    assert manifest.datasets[OBSERVATIONS].rows == 18


async def test_a_crash_then_a_change_moves_to_the_next_generation_number(
    db: asyncpg.Pool, own_lake: S3Lake
) -> None:
    await crash_mid_hour(db, own_lake)
    await add_version(db, "BBB", H1, 2, 99.0)  # the hour changes before the next run
    result = await archiver(db, own_lake).archive_hour(H1)
    assert result.generation == 2  # generation 1's keys hold other bytes: never overwritten
    assert own_lake.generations(H1) == [2]
    manifest = own_lake.manifest(H1, 2)
    assert manifest.supersedes is None
    assert manifest.datasets[OFFICIAL_VALUES].rows == 7


async def test_a_late_correction_is_a_new_generation(db: asyncpg.Pool, own_lake: S3Lake) -> None:
    await seed(db)
    job = archiver(db, own_lake)
    await job.run_round()
    before = snapshot(own_lake)
    assert await job.corrections() == []

    await add_version(db, "BBB", H1 + timedelta(minutes=30), 2, 100.5)
    assert await job.corrections() == [H1]
    results = await job.run_round()
    assert [(r.hour, r.generation, r.state) for r in results] == [(H1, 2, "corrected")]

    assert own_lake.generations(H1) == [1, 2]
    old, new = own_lake.manifest(H1, 1), own_lake.manifest(H1, 2)
    assert new.supersedes == 1
    assert old.datasets[OFFICIAL_VALUES].rows == 6
    assert new.datasets[OFFICIAL_VALUES].rows == 7
    assert new.datasets[OBSERVATIONS] == old.datasets[OBSERVATIONS]
    for key, data in before.items():  # nothing of generation 1 was overwritten
        assert own_lake.read(key) == data
    table = read_parquet(own_lake.read(new.objects_of(OFFICIAL_VALUES)[0].key))
    bbb = table.filter(pa.compute.equal(table["reference_data_id"], "BBB"))
    assert bbb.column("version").to_pylist() == [1, 1, 2]
    assert bbb.column("supersedes").to_pylist() == [None, None, 1]
    assert await db.fetchval("SELECT generation FROM lake_hours WHERE hour = $1", H1) == 2
    newest = own_lake.newest_manifest(H1)
    assert newest is not None
    assert newest.generation == 2


async def test_verify_compares_the_database_with_the_manifest(
    db: asyncpg.Pool, own_lake: S3Lake
) -> None:
    await seed(db)
    job = archiver(db, own_lake)
    assert await job.verify(H1) is False  # not archived yet
    await job.run_round()
    assert await job.verify(H1) is True
    verified = await db.fetchval("SELECT verified_at FROM lake_hours WHERE hour = $1", H1)
    assert verified is not None

    await add_observations(db, "CCC", H1 + timedelta(minutes=30), 1)
    assert await job.verify(H1) is False
    assert await db.fetchval("SELECT verified_at FROM lake_hours WHERE hour = $1", H1) is None
    assert await job.verify(H2) is True


async def test_only_closed_hours_are_due(db: asyncpg.Pool, own_lake: S3Lake) -> None:
    await seed(db)
    # H2 ends at 16:00; the longest window (60 s default, no series configured: 0) plus
    # 10 min grace: closed from 16:10 on.
    assert await archiver(db, own_lake, now=H2 + timedelta(hours=1, minutes=9)).due_hours() == [H1]
    assert await archiver(db, own_lake, now=H2 + timedelta(hours=1, minutes=10)).due_hours() == [
        H1,
        H2,
    ]
    await db.execute(
        """INSERT INTO reference_data (reference_data_id, config)
           VALUES ('AAA', '{"window_seconds": 3600}'::jsonb)"""
    )
    job = archiver(db, own_lake, now=H2 + timedelta(hours=1, minutes=10))
    assert await job.due_hours() == [hour_of(H1)]


async def test_qis_lake_archive_command(
    db: asyncpg.Pool, own_lake: S3Lake, settings: Settings
) -> None:
    await seed(db)
    name = await db.fetchval("SELECT current_database()")
    env = {
        **os.environ,
        "QIS_DB__WRITER_DSN": settings.db.writer_dsn.rsplit("/", 1)[0] + "/" + name,
        "QIS_LAKE__BUCKET": own_lake.bucket,
        "QIS_LAKE__ACCESS_KEY_ID": "testing",
        "QIS_LAKE__SECRET_ACCESS_KEY": "testing",
    }

    async def qis(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            str(REPO / ".venv" / "bin" / "qis"),
            "lake",
            "archive",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await qis("--from", "2026-01-15T14:20", "--to", "2026-01-15T14:00")
    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert lines == [["2026-01-15T14:00Z", "g1", "archived", "28 rows", lines[0][4]]]
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert events[0]["command"] == "lake archive"
    assert events[-1]["state"] == "done"
    assert own_lake.generations(H1) == [1]

    # Again, with the next hour: H1 is in the lake already, H2 is new.
    code, out, err = await qis("--from", "2026-01-15T14:00Z", "--to", "2026-01-15T15:59+00:00")
    assert code == 0, err
    states = [line.split("\t")[:3] for line in out.splitlines()]
    assert states == [
        ["2026-01-15T14:00Z", "g1", "unchanged"],
        ["2026-01-15T15:00Z", "g1", "archived"],
    ]
    assert own_lake.generations(H2) == [1]

    code, _, err = await qis("--from", "yesterday")
    assert code == 2
    assert "not an ISO 8601 time" in err


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def manifest_hours(lake: S3Lake) -> list[str]:
    return sorted(k.rsplit("/", 1)[0] for k in lake.keys("manifests/"))


async def test_an_observation_of_1970_is_one_hour_to_archive_not_500000(
    db: asyncpg.Pool, own_lake: S3Lake
) -> None:
    await add_observations(db, "OLD", EPOCH + timedelta(minutes=5), 2)
    await add_observations(db, "NEW", H2 + timedelta(minutes=15), 3)
    job = archiver(db, own_lake)
    assert await job.due_hours() == [EPOCH, H2]

    results = await job.run_round()
    assert [(r.hour, r.generation, r.state, r.rows) for r in results] == [
        (EPOCH, 1, "archived", 2),
        (H2, 1, "archived", 3),
    ]
    assert await job.run_round() == []  # the next round: nothing due, nothing late
    assert manifest_hours(own_lake) == ["manifests/1970/01/01/00", "manifests/2026/01/15/15"]
    hours = await db.fetch("SELECT hour, generation FROM lake_hours ORDER BY hour")
    assert [(r["hour"], r["generation"]) for r in hours] == [(EPOCH, 1), (H2, 1)]
    assert await db.fetchval("SELECT gaps_checked_at FROM lake_archive") is not None
    # Every hour in between: no manifest, and it verifies (no rows on either side).
    assert await job.verify(H1) is True
    assert await job.verify(EPOCH + timedelta(hours=1)) is True


async def test_a_late_row_in_a_skipped_hour_is_archived_the_next_round(
    db: asyncpg.Pool, own_lake: S3Lake
) -> None:
    early = H1 - timedelta(hours=30)
    await add_observations(db, "AAA", early, 1)
    await add_observations(db, "AAA", H2, 1)
    job = archiver(db, own_lake)
    assert [r.hour for r in await job.run_round()] == [early, H2]
    assert await job.verify(H1) is True  # skipped: empty then

    # Rows stored now into hours the archive skipped as empty, below the newest.
    await add_observations(db, "BBB", H1 + timedelta(minutes=45), 2)
    await add_version(db, "CCC", early + timedelta(hours=5), 1, 99.0)
    assert await job.verify(H1) is False  # rows the lake does not hold
    assert await job.corrections() == []  # no archived hour changed
    results = await job.run_round()
    assert [(r.hour, r.generation, r.state, r.rows) for r in results] == [
        (early + timedelta(hours=5), 1, "archived", 1),
        (H1, 1, "archived", 2),
    ]
    manifest = own_lake.manifest(H1, 1)
    assert manifest.datasets[OBSERVATIONS].rows == 2
    assert manifest.datasets[OFFICIAL_VALUES].rows == 0
    assert await job.verify(H1) is True
    assert await job.run_round() == []
    assert await db.fetchval("SELECT count(*) FROM lake_hours") == 4
