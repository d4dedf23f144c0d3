"""A bucket of its own on the shared moto server, and rows to archive, for lake tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.adapters.s3_lake import S3Lake, s3_client
from app.settings import LakeSettings, Settings

H1 = datetime(2026, 1, 15, 14, tzinfo=UTC)
H2 = H1 + timedelta(hours=1)


def lake_settings(settings: Settings, bucket: str) -> LakeSettings:
    return LakeSettings(
        endpoint_url=settings.lake.endpoint_url,
        region=settings.lake.region,
        bucket=bucket,
        backup_bucket=bucket,
        access_key_id=settings.lake.access_key_id or "testing",
        secret_access_key=settings.lake.secret_access_key or "testing",
    )


def empty_bucket(client: Any, bucket: str) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


@pytest.fixture
def own_lake(settings: Settings) -> Iterator[S3Lake]:
    """An S3Lake on a fresh bucket of the stack's S3, emptied and deleted afterwards."""
    bucket = f"qis-test-{uuid.uuid4().hex[:16]}"
    lake_cfg = lake_settings(settings, bucket)
    client = s3_client(lake_cfg)
    client.create_bucket(Bucket=bucket)
    try:
        yield S3Lake(client, bucket)
    finally:
        empty_bucket(client, bucket)
        client.delete_bucket(Bucket=bucket)


async def add_observations(pool: asyncpg.Pool, series: str, snap: datetime, n: int) -> None:
    await pool.executemany(
        """INSERT INTO observations (observation_id, reference_data_id, source, snap, value,
                                     observed_at, received_at, attributes)
           VALUES ($1, $2, $3, $4, $5, $4, $4, $6::jsonb)""",
        [
            (
                f"{series}-{snap:%H%M}-{i}-{uuid.uuid4().hex[:6]}",
                series,
                f"SRC{i}",
                snap,
                100.0 + i,
                '{"venue": "X"}' if i == 0 else None,
            )
            for i in range(n)
        ],
    )


async def add_version(
    pool: asyncpg.Pool, series: str, snap: datetime, version: int, value: float
) -> None:
    await pool.execute(
        """INSERT INTO official_values (reference_data_id, snap, version, value, status, method,
               sources_used, sources_excluded, quality, quality_score, completeness,
               timeliness, consistency, validity, supersedes, recorded_at)
           VALUES ($1, $2, $3, $4, 'official', 'median', ARRAY['SRC0','SRC1'],
                   '[]'::jsonb, NULL, 0.9, 1.0, 1.0, 0.8, 1.0, $5, clock_timestamp())""",
        series,
        snap,
        version,
        value,
        version - 1 or None,
    )


async def add_audit(pool: asyncpg.Pool, at: datetime, n: int) -> None:
    for i in range(n):
        await pool.execute(
            """INSERT INTO audit_log (actor, action, entity_type, entity_id, before, after, at,
                                      prev_hash, hash)
               VALUES ('tester', 'x.created', 'x', $1, NULL, '{"v": 1e20}'::json, $2, $3, $4)""",
            str(i),
            at + timedelta(seconds=i),
            "p" * 64,
            uuid.uuid4().hex * 2,
        )


async def seed(pool: asyncpg.Pool) -> None:
    for series in ("AAA", "BBB", "CCC"):
        for minute in (0, 30):
            snap = H1 + timedelta(minutes=minute)
            await add_observations(pool, series, snap, 3)
            await add_version(pool, series, snap, 1, 100.0)
    await add_observations(pool, "AAA", H2, 2)
    await add_version(pool, "AAA", H2, 1, 101.0)
    await add_audit(pool, H1 + timedelta(minutes=5), 4)
