"""`qis scheduler` archives closed hours to the lake, and keeps running (retrying) while
the lake does not answer. A database and a bucket of its own."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from app.adapters.postgres.migrate import create_migrated_database, drop_database
from app.adapters.s3_lake import S3Lake, s3_client
from app.settings import Settings
from tests.e2e.conftest import Service, service_env
from tests.integration.lake_helpers import H1, H2, empty_bucket, lake_settings, seed

pytestmark = pytest.mark.integration


@pytest.fixture
async def lake_db(settings: Settings, running_stack: None) -> AsyncIterator[str]:
    name = f"qis_lake_e2e_{uuid.uuid4().hex[:10]}"
    dsn = await create_migrated_database(settings.db.writer_dsn, name)
    try:
        yield dsn
    finally:
        await drop_database(settings.db.writer_dsn, name)


def wait_for(condition: Callable[[], bool], service: Service, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert service.process is not None
        assert service.process.poll() is None, f"scheduler exited:\n{service.tail()}"
        assert time.monotonic() < deadline, f"{what} not seen in 60 s:\n{service.tail()}"
        time.sleep(0.2)


async def test_the_scheduler_archives_closed_hours_and_survives_a_missing_lake(
    settings: Settings, lake_db: str
) -> None:
    pool = await asyncpg.create_pool(lake_db, min_size=1, max_size=2)
    try:
        await seed(pool)
    finally:
        await pool.close()
    bucket = f"qis-test-{uuid.uuid4().hex[:16]}"  # not created yet: the lake fails
    lake_cfg = lake_settings(settings, bucket)
    client = s3_client(lake_cfg)
    service = Service(
        f"lake-scheduler-{bucket}",
        ["scheduler"],
        service_env(
            settings,
            QIS_DB__WRITER_DSN=lake_db,
            QIS_DB__READER_DSN=lake_db,
            QIS_LAKE__ENABLED="true",
            QIS_LAKE__BUCKET=bucket,
            QIS_LAKE__ACCESS_KEY_ID="testing",
            QIS_LAKE__SECRET_ACCESS_KEY="testing",
            QIS_LAKE__ARCHIVE_INTERVAL_SECONDS="0.5",
            QIS_TELEMETRY__LOG_LEVEL="INFO",
        ),
    )
    service.start()
    try:
        wait_for(
            lambda: b"lake archive failed" in service.log.read_bytes(),
            service,
            "a failed archive round",
        )
        client.create_bucket(Bucket=bucket)
        lake = S3Lake(client, bucket)
        wait_for(
            lambda: lake.generations(H1) == [1] and lake.generations(H2) == [1],
            service,
            "both hours archived",
        )
        manifest = lake.manifest(H1, 1)
        assert manifest.datasets["observations"].rows == 18
        assert manifest.datasets["audit"].rows == 4
    finally:
        code = service.stop()
        try:
            empty_bucket(client, bucket)
            client.delete_bucket(Bucket=bucket)
        except Exception:  # noqa: S110 (never created when the first wait failed)
            pass
    assert code == 0, service.tail()
    conn = await asyncpg.connect(lake_db)
    try:
        hours = await conn.fetch("SELECT hour, generation FROM lake_hours ORDER BY hour")
    finally:
        await conn.close()
    assert [(r["hour"], r["generation"]) for r in hours][:2] == [(H1, 1), (H2, 1)]
