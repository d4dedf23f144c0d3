"""Day partitions and retention (migration 0009, app/services/retention.py) against the
real PostgreSQL, each test in a database of its own."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from app.adapters.postgres.audit import append_records, stream_records
from app.adapters.postgres.migrate import bundled_migrations, drop_database, migrate
from app.adapters.postgres.observations import insert_observations
from app.adapters.postgres.partitions import (
    PostgresRetentionStore,
    day_partitions,
    ensure_partitions,
)
from app.domain.audit import GENESIS_HASH, audit_record
from app.domain.lake import AUDIT, OBSERVATIONS, manifest_key
from app.domain.observation import Observation
from app.domain.retention import day_start
from app.entrypoints.cli import main
from app.entrypoints.scheduler import partition_maintenance
from app.ports import AuditEntry
from app.services.audit import verify_audit_trail
from app.services.retention import RetentionPolicy, apply_retention
from app.settings import RetentionSettings, Settings

NOW = datetime.now(UTC)
TODAY = NOW.date()
OLD = TODAY - timedelta(days=10)  # older than a 5-day retention
OLDER = TODAY - timedelta(days=11)
POLICY = RetentionPolicy(days=5, lock_timeout_seconds=2.0, lock_attempts=2)


def observation(series: str, snap: datetime, n: int = 0) -> Observation:
    return Observation(
        observation_id=f"{series}-{snap.isoformat()}-{n}",
        reference_data_id=series,
        source="src",
        snap=snap,
        value=1.0 + n,
        observed_at=snap,
        received_at=snap,
    )


async def where(conn: asyncpg.Connection, table: str) -> dict[str, int]:
    rows = await conn.fetch(
        f"SELECT tableoid::regclass::text AS part, count(*) FROM {table} GROUP BY 1"
    )
    return {r["part"]: r["count"] for r in rows}


async def verify_hours(
    conn: asyncpg.Connection, day: date, *, except_hour: int | None = None
) -> None:
    """lake_hours as the archive leaves them after archiving and verifying the day."""
    for h in range(24):
        hour = day_start(day) + timedelta(hours=h)
        verified = None if h == except_hour else NOW
        await conn.execute(
            """INSERT INTO lake_hours (hour, generation, archived_at, verified_at)
               VALUES ($1, 1, $2, $3)
               ON CONFLICT (hour) DO UPDATE SET verified_at = excluded.verified_at""",
            hour,
            NOW - timedelta(minutes=5),
            verified,
        )


async def qis(argv: list[str]) -> int:
    """Run a `qis` command (its own event loop, in a thread)."""
    return await asyncio.to_thread(main, argv)


async def use_database_of(
    conn: asyncpg.Connection, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`qis` commands run by the test use the test's own database (and no lake: the lake
    side of retention is tested in test_lake_retention.py, on a bucket of its own)."""
    monkeypatch.setenv("QIS_LAKE__ENABLED", "false")
    name = await conn.fetchval("SELECT current_database()")
    monkeypatch.setenv("QIS_DB__WRITER_DSN", settings.db.writer_dsn.rsplit("/", 1)[0] + "/" + name)


async def ensure_day(conn: asyncpg.Connection, day: date) -> None:
    await conn.execute("SELECT qis_ensure_day_partition('observations', 'snap', $1)", day)
    await conn.execute("SELECT qis_ensure_day_partition('audit_log', 'at', $1)", day)


async def test_partitions_exist_ahead_and_more_are_created(empty_db: asyncpg.Connection) -> None:
    names = {p.table for p in await day_partitions(empty_db, OBSERVATIONS)}
    ahead = {f"observations_p{TODAY + timedelta(days=d):%Y%m%d}" for d in range(8)}
    assert ahead <= names  # the migration created today and the week ahead

    created = await ensure_partitions(empty_db, TODAY + timedelta(days=10), ahead_days=3)

    assert created == {OBSERVATIONS: 4, AUDIT: 4}
    audit = [p.day for p in await day_partitions(empty_db, AUDIT)]
    assert audit[-4:] == [TODAY + timedelta(days=d) for d in range(10, 14)]
    assert await ensure_partitions(empty_db, TODAY + timedelta(days=10), ahead_days=3) == {
        OBSERVATIONS: 0,
        AUDIT: 0,
    }


async def test_default_partition_catches_far_snaps_and_recent_days_get_their_partition(
    empty_db: asyncpg.Connection,
) -> None:
    far = [
        observation("FAR", datetime(2999, 12, 31, 23, tzinfo=UTC)),
        observation("FAR", datetime(1970, 1, 1, tzinfo=UTC)),
    ]
    recent = day_start(TODAY - timedelta(days=30)) + timedelta(hours=5)
    stored = await insert_observations(empty_db, [*far, observation("RECENT", recent)])
    assert len(stored) == 3
    assert await where(empty_db, "observations") == {"observations_default": 3}

    await ensure_partitions(empty_db, TODAY, ahead_days=7)

    # The recent day got its partition (its row moved out of the default); the far ones
    # stay in the default, and nothing was lost or duplicated.
    assert await where(empty_db, "observations") == {
        "observations_default": 2,
        f"observations_p{recent:%Y%m%d}": 1,
    }
    again = await insert_observations(empty_db, [*far, observation("RECENT", recent)])
    assert again == []  # ON CONFLICT still sees every row where it lives


async def test_retention_refuses_a_day_with_an_unverified_hour(
    empty_db: asyncpg.Connection,
) -> None:
    await ensure_day(empty_db, OLD)
    await insert_observations(empty_db, [observation("S", day_start(OLD) + timedelta(hours=3))])
    await verify_hours(empty_db, OLD, except_hour=3)

    decisions = await apply_retention(PostgresRetentionStore(empty_db), POLICY, NOW)

    refused = [d for d in decisions if d.dataset == OBSERVATIONS]
    assert [(d.partition, d.action) for d in refused] == [
        (f"observations_p{OLD:%Y%m%d}", "refused")
    ]
    assert "1 hour(s) not verified" in (refused[0].reason or "")
    assert await where(empty_db, "observations") == {f"observations_p{OLD:%Y%m%d}": 1}
    # The audit day holds no row: none of its hours has anything to lose, it goes.
    audit = [(d.partition, d.action) for d in decisions if d.dataset == AUDIT]
    assert audit == [(f"audit_log_p{OLD:%Y%m%d}", "dropped")]
    horizon = await empty_db.fetch("SELECT dataset FROM lake_horizon")
    assert [r["dataset"] for r in horizon] == [AUDIT]

    # verified before a newer generation was written: not verified either
    await verify_hours(empty_db, OLD)
    await empty_db.execute(
        "UPDATE lake_hours SET archived_at = $1 WHERE hour = $2",
        NOW + timedelta(minutes=1),
        day_start(OLD) + timedelta(hours=3),
    )
    decisions = await apply_retention(PostgresRetentionStore(empty_db), POLICY, NOW)
    assert [d.action for d in decisions if d.dataset == OBSERVATIONS] == ["refused"]
    assert await where(empty_db, "observations") == {f"observations_p{OLD:%Y%m%d}": 1}


async def test_retention_drops_verified_days_and_moves_the_horizon(
    empty_db: asyncpg.Connection,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for day in (OLDER, OLD):
        await ensure_day(empty_db, day)
        await verify_hours(empty_db, day)
    snaps = [day_start(OLDER) + timedelta(hours=1), day_start(OLD) + timedelta(hours=23)]
    kept_snap = day_start(TODAY) + timedelta(hours=1)
    await insert_observations(
        empty_db,
        [observation("S", s, n) for s in snaps for n in range(5)]
        + [observation("S", kept_snap), observation("FAR", datetime(1970, 1, 1, tzinfo=UTC))],
    )
    await use_database_of(empty_db, settings, monkeypatch)

    # --dry-run lists both days and changes nothing
    assert await qis(["lake", "retention", "--dry-run", "--days", "5"]) == 0
    out = capsys.readouterr().out
    assert f"would-drop: observations observations_p{OLDER:%Y%m%d}" in out
    assert f"would-drop: observations observations_p{OLD:%Y%m%d}" in out
    assert "kept-default: observations default rows=1" in out
    assert sum((await where(empty_db, "observations")).values()) == 12

    assert await qis(["lake", "retention", "--days", "5"]) == 0
    out = capsys.readouterr().out
    assert f"dropped: observations observations_p{OLDER:%Y%m%d} rows=5" in out
    assert f"dropped: observations observations_p{OLD:%Y%m%d} rows=5" in out

    assert await where(empty_db, "observations") == {
        f"observations_p{TODAY:%Y%m%d}": 1,
        "observations_default": 1,  # kept: a day without a partition
    }
    names = {p.table for p in await day_partitions(empty_db, OBSERVATIONS)}
    assert f"observations_p{OLD:%Y%m%d}" not in names
    horizon = await empty_db.fetchval(
        "SELECT retained_from FROM lake_horizon WHERE dataset = 'observations'"
    )
    assert horizon == day_start(OLD + timedelta(days=1))
    # a late row of a dropped day is still accepted (the default partition takes it)
    assert len(await insert_observations(empty_db, [observation("LATE", snaps[1], 9)])) == 1


async def append_at(conn: asyncpg.Connection, at: datetime, count: int) -> list[int]:
    async with conn.transaction():
        records = await append_records(
            conn,
            [
                AuditEntry(
                    actor="test",
                    action="configure",
                    entity_type="series",
                    entity_id=f"S{i}",
                    before=None,
                    after={"i": i, "at": at.isoformat()},
                )
                for i in range(count)
            ],
            at,
        )
    return [r.seq or 0 for r in records]


async def test_audit_verify_continues_from_the_checkpoint_of_dropped_partitions(
    empty_db: asyncpg.Connection,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for day in (OLDER, OLD):
        await ensure_day(empty_db, day)
    first = await append_at(empty_db, day_start(OLDER) + timedelta(hours=2), 3)
    second = await append_at(empty_db, day_start(OLD) + timedelta(hours=20, minutes=7), 4)
    kept = await append_at(empty_db, NOW, 2)
    await verify_hours(empty_db, OLDER)
    await verify_hours(empty_db, OLD, except_hour=20)  # OLD stays: an hour with rows unverified
    await use_database_of(empty_db, settings, monkeypatch)

    decisions = await apply_retention(PostgresRetentionStore(empty_db), POLICY, NOW)

    audit = [(d.partition, d.action, d.checkpoint_seq) for d in decisions if d.dataset == AUDIT]
    assert audit == [
        (f"audit_log_p{OLDER:%Y%m%d}", "dropped", first[-1]),
        (f"audit_log_p{OLD:%Y%m%d}", "refused", None),
    ]
    checkpoint = await empty_db.fetchrow("SELECT * FROM audit_checkpoints")
    assert checkpoint["seq"] == first[-1]
    assert checkpoint["manifest_key"] == manifest_key(day_start(OLDER) + timedelta(hours=2), 1)
    remaining = [r["seq"] for r in await empty_db.fetch("SELECT seq FROM audit_log ORDER BY seq")]
    assert remaining == second + kept

    assert await qis(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    retained = len(second) + len(kept)
    assert f"OK: {retained} audit record(s) after the archived checkpoint at seq {first[-1]}" in out

    # tamper with a retained record: verify fails at it
    await empty_db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    await empty_db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = $1", second[1])
    assert await qis(["audit", "verify"]) == 1
    assert f"BROKEN at seq {second[1]}" in capsys.readouterr().out


async def test_the_migration_moves_existing_rows(settings: Settings) -> None:
    name = f"qis_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(settings.db.writer_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    conn = await asyncpg.connect(settings.db.writer_dsn.rsplit("/", 1)[0] + "/" + name)
    try:
        await migrate(conn, bundled_migrations()[:8])
        snaps = [
            day_start(TODAY - timedelta(days=d)) + timedelta(hours=d % 24) for d in range(0, 40, 3)
        ]
        snaps.append(datetime(2999, 1, 1, tzinfo=UTC))
        await insert_observations(conn, [observation("S", s, n) for s in snaps for n in range(3)])
        prev = GENESIS_HASH
        for d in (20, 2, 0):  # as the code of migration 8 appended them
            at = day_start(TODAY - timedelta(days=d)) + timedelta(hours=1)
            for i in range(5):
                record = audit_record(
                    prev,
                    actor="t",
                    action="a",
                    entity_type="series",
                    entity_id=f"S{i}",
                    before=None,
                    after={"i": i},
                    at=at,
                )
                await conn.execute(
                    """INSERT INTO audit_log (actor, action, entity_type, entity_id, before,
                                              after, at, prev_hash, hash)
                       VALUES ($1, $2, $3, $4, NULL, $5::json, $6, $7, $8)""",
                    record.actor,
                    record.action,
                    record.entity_type,
                    record.entity_id,
                    json.dumps(record.after, separators=(",", ":")),
                    at,
                    record.prev_hash,
                    record.hash,
                )
                prev = record.hash
        before_obs = await conn.fetch("SELECT * FROM observations ORDER BY observation_id")
        before_audit = await conn.fetch("SELECT * FROM audit_log ORDER BY seq")

        assert [m.version for m in await migrate(conn, bundled_migrations())] == [9, 10]

        after_obs = await conn.fetch("SELECT * FROM observations ORDER BY observation_id")
        after_audit = await conn.fetch("SELECT * FROM audit_log ORDER BY seq")
        assert len(after_obs) == len(before_obs) == 3 * len(snaps)
        assert [dict(r) for r in after_obs] == [dict(r) for r in before_obs]
        assert [tuple(r) for r in after_audit] == [tuple(r) for r in before_audit]
        placed = await where(conn, "observations")
        assert placed["observations_default"] == 3  # the far snap
        assert placed[f"observations_p{TODAY - timedelta(days=39):%Y%m%d}"] == 3
        assert (await where(conn, "audit_log"))[
            f"audit_log_p{TODAY - timedelta(days=20):%Y%m%d}"
        ] == 5
        # the sequence goes on after the moved records, and the chain is intact
        more = await append_at(conn, datetime.now(UTC), 1)
        assert more[0] > before_audit[-1]["seq"]
        assert (await verify_audit_trail(stream_records(conn))).records == len(before_audit) + 1
    finally:
        await conn.close()
        await drop_database(settings.db.writer_dsn, name)


async def test_the_leaders_round_creates_days_ahead_and_applies_retention(
    empty_db: asyncpg.Connection, settings: Settings
) -> None:
    await ensure_day(empty_db, OLD)
    await verify_hours(empty_db, OLD)
    await insert_observations(empty_db, [observation("S", day_start(OLD) + timedelta(hours=2))])
    name = await empty_db.fetchval("SELECT current_database()")
    pool = await asyncpg.create_pool(
        settings.db.writer_dsn.rsplit("/", 1)[0] + "/" + name, min_size=1, max_size=1
    )
    try:
        leader_round = partition_maintenance(
            RetentionSettings(db_days=5, partitions_ahead_days=9), pool
        )
        await leader_round()
    finally:
        await pool.close()

    days = [p.day for p in await day_partitions(empty_db, OBSERVATIONS)]
    assert days[-1] == TODAY + timedelta(days=9)
    assert OLD not in days
    assert OLD not in [p.day for p in await day_partitions(empty_db, AUDIT)]
    horizon = await empty_db.fetch("SELECT dataset, retained_from FROM lake_horizon ORDER BY 1")
    assert [(r["dataset"], r["retained_from"]) for r in horizon] == [
        (AUDIT, day_start(OLD + timedelta(days=1))),
        (OBSERVATIONS, day_start(OLD + timedelta(days=1))),
    ]
