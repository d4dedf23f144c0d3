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

    # A row stored after the archive: its hour no longer matches the lake, nothing goes.
    await insert_observations(pool, [observation(START + timedelta(hours=7), 9)])
    async with pool.acquire() as conn:
        decisions = await apply_retention(
            PostgresRetentionStore(conn), POLICY, NOW, verify=archiver.verify
        )
    assert [(d.dataset, d.action) for d in decisions] == [
        (OBSERVATIONS, "refused"),
        (AUDIT, "refused"),
    ]
    assert "first " + (START + timedelta(hours=7)).isoformat() in (decisions[0].reason or "")
    assert await pool.fetchval("SELECT count(*) FROM observations") == 10

    # Archived again (a new generation), the day goes.
    await archiver.archive_hour(START + timedelta(hours=7))
    async with pool.acquire() as conn:
        decisions = await apply_retention(
            PostgresRetentionStore(conn), POLICY, NOW, verify=archiver.verify
        )
        assert DAY not in [p.day for p in await day_partitions(conn, OBSERVATIONS)]
        assert DAY not in [p.day for p in await day_partitions(conn, AUDIT)]
    assert [(d.dataset, d.action, d.rows) for d in decisions] == [
        (OBSERVATIONS, "dropped", 10),
        (AUDIT, "dropped", 3),
    ]
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
