"""The S3 adapter on the stack's real S3 endpoint (moto server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from app.adapters.s3_lake import ObjectConflict, S3Lake, ensure_buckets, s3_client
from app.domain.lake import DatasetSummary, Manifest
from app.settings import Settings
from tests.integration.lake_helpers import empty_bucket, lake_settings, own_lake

pytestmark = pytest.mark.integration
__all__ = ["own_lake"]

HOUR = datetime(2026, 1, 15, 14, tzinfo=UTC)


def test_create_is_conditional_and_idempotent(own_lake: S3Lake) -> None:
    assert own_lake.create("a/b.bin", b"one") is True
    assert own_lake.create("a/b.bin", b"one") is False  # same bytes: done before
    with pytest.raises(ObjectConflict):
        own_lake.create("a/b.bin", b"two")
    assert own_lake.read("a/b.bin") == b"one"
    assert own_lake.exists("a/b.bin")
    assert not own_lake.exists("a/c.bin")


def test_manifests_newest_generation(own_lake: S3Lake) -> None:
    assert own_lake.newest_manifest(HOUR) is None
    for generation in (1, 2):
        own_lake.put_manifest(
            Manifest(
                hour=HOUR,
                generation=generation,
                created_at=HOUR,
                datasets={"audit": DatasetSummary(rows=generation, fingerprint="f")},
                objects=(),
                supersedes=generation - 1 or None,
            )
        )
    own_lake.create("manifests/2026/01/15/14/notes.txt", b"ignored")
    assert own_lake.generations(HOUR) == [1, 2]
    newest = own_lake.newest_manifest(HOUR)
    assert newest is not None
    assert newest.generation == 2
    assert newest.supersedes == 1
    assert own_lake.manifest(HOUR, 1).datasets["audit"].rows == 1


def test_ensure_buckets_creates_missing_ones_once(settings: Settings) -> None:
    a, b = (f"qis-test-{uuid.uuid4().hex[:16]}" for _ in range(2))
    cfg = lake_settings(settings, a)
    cfg = type(cfg)(**{**{f: getattr(cfg, f) for f in cfg.__struct_fields__}, "backup_bucket": b})
    client = s3_client(cfg)
    try:
        assert ensure_buckets(cfg, client) == [a, b]
        assert ensure_buckets(cfg, client) == []
    finally:
        for bucket in (a, b):
            empty_bucket(client, bucket)
            client.delete_bucket(Bucket=bucket)
