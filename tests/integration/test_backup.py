"""`qis backup` and `qis restore-drill` against the stack's PostgreSQL and the moto S3
server (127.0.0.1:59000): each test backs up a database of its own into a bucket of its
own, and the drill restores it into a throw-away cluster it starts itself."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from app.adapters.postgres import audit
from app.adapters.postgres.archive import PostgresArchiveSource
from app.adapters.postgres.backup import table_counts
from app.adapters.postgres.migrate import (
    bundled_migrations,
    migration_problems,
)
from app.adapters.s3_lake import S3Lake, s3_client
from app.domain import lake
from app.domain.backup import database_prefix, manifest_key
from app.entrypoints.backup import BackupError, run_backup, run_restore_drill
from app.entrypoints.cli import main
from app.entrypoints.progress import SILENT
from app.ports import AuditEntry
from app.services.archive import ArchivePolicy, Archiver
from app.settings import Settings
from tests.integration.conftest import _fresh_database
from tests.integration.lake_helpers import empty_bucket

pytestmark = pytest.mark.integration

S3_ENDPOINT = "http://127.0.0.1:59000"
HOUR = datetime(2026, 11, 30, 9, tzinfo=UTC)
SERIES = ("BK.EURUSD", "BK.USDJPY", "BK.ETHUSD")
OBSERVATIONS_PER_SERIES = 120  # one a minute: hours 09 and 10


def _lake_settings(settings: Settings, backup_bucket: str, lake_bucket: str) -> Any:
    return msgspec.structs.replace(
        settings.lake,
        endpoint_url=S3_ENDPOINT,
        backup_bucket=backup_bucket,
        bucket=lake_bucket,
        access_key_id="testing",
        secret_access_key="testing",
    )


def rows_of(tables: dict[str, int], table: str) -> int:
    """The rows of a table: its own count, or the sum of its partitions' (observations and
    audit_log are partitioned by day; counts are kept per leaf table)."""
    return sum(
        n
        for name, n in tables.items()
        if name == f"public.{table}" or re.fullmatch(rf"public\.{table}_(p\d{{8}}|default)", name)
    )


@pytest.fixture
def buckets(settings: Settings) -> Iterator[tuple[str, str]]:
    """A backup bucket and a lake bucket of this test's own, emptied and deleted after."""
    names = tuple(f"qis-test-{kind}-{uuid.uuid4().hex[:10]}" for kind in ("backups", "lake"))
    client = s3_client(_lake_settings(settings, *names))
    for name in names:
        client.create_bucket(Bucket=name)
    yield names[0], names[1]
    for name in names:
        empty_bucket(client, name)
        client.delete_bucket(Bucket=name)


async def _fill(conn: asyncpg.Connection) -> None:
    """Series, observations and official values of two hours, a chained audit trail,
    and one archived hour (09:00) as the archive job records it."""
    for series in SERIES:
        await conn.execute(
            "INSERT INTO reference_data (reference_data_id, config) VALUES ($1, '{}')", series
        )
        await conn.execute(
            """INSERT INTO observations (observation_id, reference_data_id, source, snap,
                   value, observed_at, received_at)
               SELECT $1 || '/' || g, $1, 'src', $2::timestamptz + g * interval '1 minute',
                      g, $2, $2
                 FROM generate_series(0, $3 - 1) g""",
            series,
            HOUR,
            OBSERVATIONS_PER_SERIES,
        )
        await conn.execute(
            """INSERT INTO official_values (reference_data_id, snap, version, value, status,
                   method, sources_used, sources_excluded, quality_score, completeness,
                   timeliness, consistency, validity, recorded_at)
               SELECT $1, $2::timestamptz + g * interval '10 minutes', 1, g, 'official',
                      'median', '{src}', '[]', 1, 1, 1, 1, 1,
                      $2::timestamptz + g * interval '10 minutes'
                 FROM generate_series(0, 11) g""",
            series,
            HOUR,
        )
    for n in range(3):
        async with conn.transaction():
            at = await audit.lock_journal(conn)
            await audit.append_records(
                conn,
                [
                    AuditEntry(
                        actor="test",
                        action="test.appended",
                        entity_type="test",
                        entity_id=series,
                        before=None,
                        after={"n": n},
                    )
                    for series in SERIES
                ],
                at,
            )
    await conn.execute("INSERT INTO lake_hours (hour, generation) VALUES ($1, 1)", HOUR)


def _hour_manifest(observations: int, official_values: int) -> bytes:
    summaries = {
        lake.OBSERVATIONS: lake.DatasetSummary(rows=observations, fingerprint="f"),
        lake.OFFICIAL_VALUES: lake.DatasetSummary(rows=official_values, fingerprint="f"),
    }
    manifest = lake.Manifest(
        hour=HOUR,
        generation=1,
        created_at=HOUR + timedelta(hours=2),
        datasets=summaries,
        objects=(),
    )
    return msgspec.json.encode(manifest)


@pytest.fixture
async def source(
    settings: Settings, running_stack: None, buckets: tuple[str, str]
) -> AsyncIterator[tuple[Settings, str]]:
    """Settings pointing at a filled database and the test's buckets, and the database's
    DSN; the lake bucket holds the manifest of the archived hour, matching the rows."""
    async with _fresh_database(settings) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await _fill(conn)
        finally:
            await conn.close()
        mine = msgspec.structs.replace(
            settings,
            db=msgspec.structs.replace(settings.db, writer_dsn=dsn, reader_dsn=dsn),
            lake=_lake_settings(settings, *buckets),
        )
        per_series_hour = (OBSERVATIONS_PER_SERIES // 2) * len(SERIES)
        s3_client(mine.lake).put_object(
            Bucket=buckets[1],
            Key=lake.manifest_key(HOUR, 1),
            Body=_hour_manifest(per_series_hour, 6 * len(SERIES)),
        )
        yield mine, dsn


async def _counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return await table_counts(conn)
    finally:
        await conn.close()


async def test_backup_then_restore_drill_restores_the_snapshot(
    source: tuple[Settings, str],
) -> None:
    settings, dsn = source
    before = await _counts(dsn)
    manifest = await run_backup(settings, SILENT)
    # Written after the snapshot: not in the backup, not in the restore.
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO observations (observation_id, reference_data_id, source, snap,
                   value, observed_at, received_at) VALUES ('late', $1, 'src', $2, 1, $2, $2)""",
            SERIES[0],
            HOUR,
        )
        newest_audit = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC")
    finally:
        await conn.close()

    assert manifest.tables == before
    assert rows_of(manifest.tables, "observations") == OBSERVATIONS_PER_SERIES * len(SERIES)
    assert rows_of(manifest.tables, "audit_log") == 3 * len(SERIES)
    assert manifest.audit is not None
    assert (manifest.audit.seq, manifest.audit.hash) == tuple(newest_audit)
    assert manifest.migration_version == len(bundled_migrations())
    stored = s3_client(settings.lake).head_object(
        Bucket=settings.lake.backup_bucket, Key=manifest.dump.key
    )
    assert stored["ContentLength"] == manifest.dump.bytes > 0

    report = await run_restore_drill(settings, SILENT)

    assert report.failures == []
    assert report.backup is not None
    assert report.backup.backup_id == manifest.backup_id
    assert report.restored_tables == before
    assert rows_of(report.restored_tables, "observations") == OBSERVATIONS_PER_SERIES * len(SERIES)
    checks = "\n".join(report.lines)
    assert "check audit verify: OK, 9 audit record(s)" in checks
    assert "check migrations: OK" in checks
    assert "check lake: OK, the newest 1 of 1 archived hour(s) match" in checks
    assert report.timings["restore"] > 0


async def test_the_commands_print_the_recovery_point_and_pass(
    source: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    settings, dsn = source
    for name, value in {
        "QIS_DB__WRITER_DSN": dsn,
        "QIS_DB__READER_DSN": dsn,
        "QIS_LAKE__ENDPOINT_URL": S3_ENDPOINT,
        "QIS_LAKE__BACKUP_BUCKET": settings.lake.backup_bucket,
        "QIS_LAKE__BUCKET": settings.lake.bucket,
        "QIS_LAKE__ACCESS_KEY_ID": "testing",
        "QIS_LAKE__SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)

    assert await asyncio.to_thread(main, ["backup"]) == 0
    backup_out = capsys.readouterr().out
    assert await asyncio.to_thread(main, ["restore-drill"]) == 0
    drill = capsys.readouterr()

    backup_id = backup_out.split()[1]
    assert f"backup {backup_id} of {dsn.rsplit('/', 1)[1]}" in drill.out
    assert "recovery point: " in drill.out
    assert "newest audit record seq" in drill.out
    assert "restore time (RTO achieved): " in drill.out
    assert drill.out.rstrip().endswith("OK: the restore drill passed")
    # Not a terminal: progress is JSON lines on stderr.
    assert '"command": "restore-drill", "step": 5, "steps": 5' in drill.err


async def test_a_corrupted_dump_fails_the_drill(
    source: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    settings, _ = source
    manifest = await run_backup(settings, SILENT)
    client, bucket = s3_client(settings.lake), settings.lake.backup_bucket
    data = bytearray(client.get_object(Bucket=bucket, Key=manifest.dump.key)["Body"].read())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    client.put_object(Bucket=bucket, Key=manifest.dump.key, Body=bytes(data))

    report = await run_restore_drill(settings, SILENT)

    assert len(report.failures) == 1
    assert report.failures[0].startswith(f"sha256: s3://{bucket}/{manifest.dump.key} has")
    assert "the object is corrupt, not restored" in report.failures[0]
    assert "restore" not in report.timings  # nothing was restored


async def test_missing_backups_are_named(source: tuple[Settings, str]) -> None:
    settings, dsn = source
    database = dsn.rsplit("/", 1)[1]
    bucket = settings.lake.backup_bucket
    with pytest.raises(BackupError) as nothing:
        await run_restore_drill(settings, SILENT)
    assert str(nothing.value) == (
        f"no backup of database {database!r} in s3://{bucket}/{database_prefix(database)}"
    )
    manifest = await run_backup(settings, SILENT)
    with pytest.raises(BackupError) as named:
        await run_restore_drill(settings, SILENT, backup="20200101T000000Z")
    assert str(named.value) == (
        f"no backup 20200101T000000Z of database {database!r} in "
        f"s3://{bucket}/{database_prefix(database)} (the newest is {manifest.backup_id})"
    )
    with pytest.raises(ValueError, match="is not a backup id"):
        await run_restore_drill(settings, SILENT, backup="../other")


async def test_a_backup_without_its_manifest_is_not_restored(
    source: tuple[Settings, str],
) -> None:
    settings, dsn = source
    database = dsn.rsplit("/", 1)[1]
    manifest = await run_backup(settings, SILENT)
    s3_client(settings.lake).delete_object(
        Bucket=settings.lake.backup_bucket, Key=manifest_key(database, manifest.backup_id)
    )
    with pytest.raises(BackupError, match=r"^no backup of database"):
        await run_restore_drill(settings, SILENT)


async def test_rows_missing_from_the_lake_hour_fail_the_drill(
    source: tuple[Settings, str],
) -> None:
    settings, _ = source
    per_hour = (OBSERVATIONS_PER_SERIES // 2) * len(SERIES)
    # The lake says the hour had 5 more observations than the database holds.
    s3_client(settings.lake).put_object(
        Bucket=settings.lake.bucket,
        Key=lake.manifest_key(HOUR, 1),
        Body=_hour_manifest(per_hour + 5, 6 * len(SERIES)),
    )
    await run_backup(settings, SILENT)

    report = await run_restore_drill(settings, SILENT)

    assert report.failures == [
        f"lake: lost: observations 2026-11-30T09h: {per_hour} rows, "
        f"the lake manifest {per_hour + 5}"
    ]


async def test_a_broken_audit_chain_fails_the_drill(source: tuple[Settings, str]) -> None:
    settings, dsn = source
    conn = await asyncpg.connect(dsn)
    try:
        # The trail is append-only (a trigger): the owner turns that off to tamper with it.
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 4")
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()
    await run_backup(settings, SILENT)

    report = await run_restore_drill(settings, SILENT)

    assert len(report.failures) == 1
    assert report.failures[0].startswith("audit verify: broken at seq 4: ")
    assert rows_of(report.restored_tables, "audit_log") == 9


async def test_migration_problems_names_what_is_missing(empty_db: asyncpg.Connection) -> None:
    conn = empty_db
    assert await migration_problems(conn, bundled_migrations()) == []
    newest = bundled_migrations()[-1]
    await conn.execute("DELETE FROM schema_migrations WHERE version = $1", newest.version)
    await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    await conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'y')"
    )

    problems = await migration_problems(conn, bundled_migrations())

    assert problems == [
        f"0001_{bundled_migrations()[0].name} was applied from a different file (checksum differs)",
        f"{newest.version:04d}_{newest.name} is not applied",
        "0999_future is applied but unknown to this code (a newer schema)",
    ]


async def test_hours_archived_by_the_archive_job_match_the_restored_database(
    source: tuple[Settings, str],
) -> None:
    settings, dsn = source
    lake_store = S3Lake.from_settings(settings.lake)
    # The archive job, not the fixture, writes the lake and lake_hours this time.
    lake_store.client.delete_object(Bucket=lake_store.bucket, Key=lake.manifest_key(HOUR, 1))
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
    try:
        await pool.execute("DELETE FROM lake_hours")
        job = Archiver(
            PostgresArchiveSource(pool, row_group_rows=1000),
            lake_store,
            ArchivePolicy(late_grace=timedelta(minutes=10)),
            clock=lambda: HOUR + timedelta(hours=3),
        )
        # With nothing archived yet, the job starts at the first hour with data.
        results = await job.run_round()
        archived = await pool.fetch("SELECT hour, generation FROM lake_hours ORDER BY hour")
    finally:
        await pool.close()
    assert [(r.hour, r.generation) for r in results] == [(HOUR, 1), (HOUR + lake.HOUR, 1)]
    assert [tuple(r) for r in archived] == [(HOUR, 1), (HOUR + lake.HOUR, 1)]
    await run_backup(settings, SILENT)

    report = await run_restore_drill(settings, SILENT)

    assert report.failures == []
    assert "check lake: OK, the newest 2 of 2 archived hour(s) match their manifests" in (
        report.lines
    )
