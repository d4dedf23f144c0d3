"""Retention with the real archive: hours archived to the lake (a bucket of its own on the
stack's S3) and verified by `Archiver.verify` before their day is dropped from PostgreSQL
(a database of its own)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.adapters.postgres.archive import PostgresArchiveSource
from app.adapters.postgres.observations import insert_observations
from app.adapters.postgres.partitions import PostgresRetentionStore, day_partitions
from app.adapters.s3_lake import S3Lake
from app.domain.lake import AUDIT, OBSERVATIONS, manifest_key
from app.domain.observation import Observation
from app.domain.retention import day_start
from app.entrypoints.cli import main
from app.services.archive import ArchivePolicy, Archiver
from app.services.retention import RetentionPolicy, apply_retention
from app.settings import Settings
from tests.integration.lake_helpers import own_lake
from tests.integration.test_partitions_retention import append_at

pytestmark = pytest.mark.integration
__all__ = ["own_lake"]

NOW = datetime.now(UTC)
DAY = NOW.date() - timedelta(days=10)
START = day_start(DAY)
POLICY = RetentionPolicy(days=5, lock_timeout_seconds=2.0, lock_attempts=2)


def observation(snap: datetime, n: int) -> Observation:
    return Observation(
        observation_id=f"o-{snap:%d%H%M}-{n}",
        reference_data_id="ETH-USD",
        source=f"SRC{n}",
        snap=snap,
        value=100.0 + n,
        observed_at=snap,
        received_at=snap,
    )


async def append(pool: asyncpg.Pool, at: datetime, count: int) -> list[int]:
    async with pool.acquire() as conn:
        return await append_at(conn, at, count)


async def test_archived_verified_days_leave_the_database_and_the_chain_still_verifies(
    empty_pool: asyncpg.Pool,
    own_lake: S3Lake,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pool = empty_pool
    for table, key in (("observations", "snap"), ("audit_log", "at")):
        await pool.execute("SELECT qis_ensure_day_partition($1, $2, $3)", table, key, DAY)
    await insert_observations(
        pool, [observation(START + timedelta(hours=h), n) for h in (5, 7, 20) for n in range(3)]
    )
    dropped_seqs = await append(pool, START + timedelta(hours=5, minutes=10), 3)
    kept_seqs = await append(pool, NOW, 2)
    archiver = Archiver(
        PostgresArchiveSource(pool, row_group_rows=4),
        own_lake,
        ArchivePolicy(late_grace=timedelta(minutes=10)),
        clock=lambda: START + timedelta(days=1, hours=2),
    )
    for _ in range(10):  # bounded: each round archives a batch of due hours
        if not await archiver.due_hours():
            break
        await archiver.run_round()
    assert not await archiver.due_hours()

    # Only the hours holding rows were archived, none of the empty ones.
    archived = await pool.fetch("SELECT hour FROM lake_hours ORDER BY hour")
    assert [r["hour"] for r in archived] == [START + timedelta(hours=h) for h in (5, 7, 20)]

    # A row stored after the archive: its hour no longer matches the lake, the observations'
    # day stays; the audit day holds no row of that hour and goes.
    await insert_observations(pool, [observation(START + timedelta(hours=7), 9)])
    async with pool.acquire() as conn:
        decisions = await apply_retention(
            PostgresRetentionStore(conn), POLICY, NOW, verify=archiver.verify
        )
    assert [(d.dataset, d.action, d.rows) for d in decisions] == [
        (OBSERVATIONS, "refused", None),
        (AUDIT, "dropped", 3),
    ]
    assert "1 hour(s) not verified" in (decisions[0].reason or "")
    assert "first " + (START + timedelta(hours=7)).isoformat() in (decisions[0].reason or "")
    assert await pool.fetchval("SELECT count(*) FROM observations") == 10

    # A correction to hour 5 after its audit records left the database: the new
    # generation keeps them (generation 1's audit object), and the hour still verifies.
    await insert_observations(pool, [observation(START + timedelta(hours=5), 9)])
    five = START + timedelta(hours=5)
    corrected = await archiver.archive_hour(five)
    assert (corrected.generation, corrected.state, corrected.rows) == (2, "corrected", 4)
    old, new = own_lake.manifest(five, 1), own_lake.manifest(five, 2)
    assert new.datasets[AUDIT] == old.datasets[AUDIT]
    assert new.datasets[AUDIT].rows == 3
    assert new.objects_of(AUDIT) == old.objects_of(AUDIT)
    assert new.datasets[OBSERVATIONS].rows == 4
    assert await archiver.verify(five) is True

    # Hour 7 archived again (a new generation), the day goes.
    await archiver.archive_hour(START + timedelta(hours=7))
    async with pool.acquire() as conn:
        decisions = await apply_retention(
            PostgresRetentionStore(conn), POLICY, NOW, verify=archiver.verify
        )
        assert DAY not in [p.day for p in await day_partitions(conn, OBSERVATIONS)]
        assert DAY not in [p.day for p in await day_partitions(conn, AUDIT)]
    assert [(d.dataset, d.action, d.rows) for d in decisions] == [(OBSERVATIONS, "dropped", 11)]
    assert await pool.fetchval("SELECT count(*) FROM observations") == 0
    horizon = await pool.fetch("SELECT dataset, retained_from FROM lake_horizon ORDER BY 1")
    assert [(r["dataset"], r["retained_from"]) for r in horizon] == [
        (AUDIT, START + timedelta(days=1)),
        (OBSERVATIONS, START + timedelta(days=1)),
    ]
    checkpoint = await pool.fetchrow("SELECT seq, manifest_key FROM audit_checkpoints")
    assert checkpoint["seq"] == dropped_seqs[-1]
    assert checkpoint["manifest_key"] == manifest_key(START + timedelta(hours=5), 1)
    assert checkpoint["manifest_key"] in own_lake.keys("manifests/")

    name = await pool.fetchval("SELECT current_database()")
    monkeypatch.setenv("QIS_DB__WRITER_DSN", settings.db.writer_dsn.rsplit("/", 1)[0] + "/" + name)
    assert await asyncio.to_thread(main, ["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"OK: {len(kept_seqs)} audit record(s) after the archived checkpoint" in out


async def test_empty_hours_do_not_hold_a_day_and_a_late_row_of_a_skipped_hour_does(
    empty_pool: asyncpg.Pool, own_lake: S3Lake
) -> None:
    pool = empty_pool
    second = DAY + timedelta(days=1)
    for day in (DAY, second):
        await pool.execute("SELECT qis_ensure_day_partition('observations', 'snap', $1)", day)
    first_hours = [START + timedelta(hours=h) for h in (2, 14)]
    late_hour = START + timedelta(days=1, hours=9)
    await insert_observations(
        pool,
        [observation(h, n) for h in first_hours for n in range(2)]
        + [observation(START + timedelta(days=1, hours=3), 0)],
    )
    archiver = Archiver(
        PostgresArchiveSource(pool, row_group_rows=4),
        own_lake,
        ArchivePolicy(late_grace=timedelta(minutes=10)),
        clock=lambda: START + timedelta(days=3),
    )
    results = await archiver.run_round()
    assert [r.hour for r in results] == [*first_hours, START + timedelta(days=1, hours=3)]
    assert await archiver.run_round() == []

    # A row stored now into an hour of the second day the archive skipped as empty.
    await insert_observations(pool, [observation(late_hour, 7)])
    async with pool.acquire() as conn:
        decisions = await apply_retention(
            PostgresRetentionStore(conn), POLICY, NOW, verify=archiver.verify
        )
    assert [(d.partition, d.action, d.rows) for d in decisions] == [
        (f"observations_p{DAY:%Y%m%d}", "dropped", 4),  # 22 empty hours, 2 verified
        (f"observations_p{second:%Y%m%d}", "refused", None),
    ]
    assert f"first {late_hour.isoformat()}" in (decisions[1].reason or "")
    assert await pool.fetchval("SELECT count(*) FROM observations") == 2

    # The next round archives the late row; then the day goes.
    [result] = await archiver.run_round()
    assert (result.hour, result.generation, result.rows) == (late_hour, 1, 1)
    async with pool.acquire() as conn:
        decisions = await apply_retention(
            PostgresRetentionStore(conn), POLICY, NOW, verify=archiver.verify
        )
    assert [(d.partition, d.action, d.rows) for d in decisions] == [
        (f"observations_p{second:%Y%m%d}", "dropped", 2)
    ]
    assert await pool.fetchval("SELECT count(*) FROM observations") == 0
    horizon = await pool.fetchval(
        "SELECT retained_from FROM lake_horizon WHERE dataset = $1", OBSERVATIONS
    )
    assert horizon == START + timedelta(days=2)
    assert await pool.fetchval("SELECT count(*) FROM lake_hours") == 4
