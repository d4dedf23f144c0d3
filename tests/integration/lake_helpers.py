"""A bucket of its own on the shared moto server, for lake tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app.adapters.s3_lake import S3Lake, s3_client
from app.settings import LakeSettings, Settings


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
