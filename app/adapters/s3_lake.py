"""The data lake's S3 bucket (docs/lake.md): conditional object creation, manifests, reads.

boto3 (already the service's AWS SDK) with the endpoint, region and static credentials of
`LakeSettings`: locally the stack's moto server, in AWS the SDK's default endpoint and the
pod's IAM role. The calls block; async callers run them in a thread.

Objects are created with `If-None-Match: *`: S3 refuses (412) to replace an existing key.
A refusal is then checked: the same bytes already there is a completed write (a re-run),
other bytes an `ObjectConflict`, never an overwrite.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
import msgspec
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.adapters.aws_clients import endpoint_options, error_code
from app.domain.lake import Manifest, ObjectConflict, manifest_key, manifest_prefix

if TYPE_CHECKING:
    from app.settings import LakeSettings, TimestreamSettings

__all__ = [
    "LAKE_ERRORS",
    "ObjectConflict",
    "S3Lake",
    "ensure_bucket",
    "ensure_buckets",
    "s3_client",
]

# What a call to an unreachable or failing S3 raises (the archive retries next round).
LAKE_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

_MANIFEST = re.compile(r"g(\d{4,})\.json$")
_encode = msgspec.json.Encoder()
_manifest = msgspec.json.Decoder(Manifest)


def s3_client(settings: LakeSettings | TimestreamSettings) -> Any:
    """A boto3 S3 client for the settings' endpoint (path-style addressing on a custom one):
    the lake's, or the bucket of the records Timestream rejects."""
    kwargs: dict[str, Any] = {"region_name": settings.region}
    kwargs.update(endpoint_options(settings))
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if settings.endpoint_url else {},
    )
    return boto3.client("s3", config=config, **kwargs)


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def ensure_bucket(client: Any, bucket: str, region: str) -> bool:
    """Create `bucket` in `region` when missing; True when created now."""
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if _status(exc) != 404 and error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
        return True
    except ClientError as exc:
        if error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise
    return False


def ensure_buckets(settings: LakeSettings, client: Any = None) -> list[str]:
    """Create the lake and backup buckets when missing; return the ones created."""
    client = client or s3_client(settings)
    return [
        bucket
        for bucket in dict.fromkeys((settings.bucket, settings.backup_bucket))
        if ensure_bucket(client, bucket, settings.region)
    ]


class S3Lake:
    """One bucket of the lake, optionally under a key prefix (tests use one of their own)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def from_settings(cls, settings: LakeSettings, prefix: str = "") -> S3Lake:
        return cls(s3_client(settings), settings.bucket, prefix)

    def check(self) -> None:
        """Raise (one of `LAKE_ERRORS`) unless the bucket answers: a cheap first call."""
        self.client.head_bucket(Bucket=self.bucket)

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def create(self, key: str, data: bytes) -> bool:
        """Create `key` with `data` unless it exists: True when written now, False when the
        same bytes were already there; `ObjectConflict` when other bytes are."""
        sha = hashlib.sha256(data).hexdigest()
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                IfNoneMatch="*",
                Metadata={"sha256": sha},
            )
            return True
        except ClientError as exc:
            # 412: the key exists; 409: a concurrent conditional write of it is in flight.
            if _status(exc) not in (409, 412) and error_code(exc) not in {
                "PreconditionFailed",
                "ConditionalRequestConflict",
            }:
                raise
        if hashlib.sha256(self.read(key)).hexdigest() != sha:
            raise ObjectConflict(key)
        return False

    def read(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if _status(exc) == 404 or error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (relative to this lake's prefix), sorted."""
        out: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            out.extend(o["Key"][len(self.prefix) :] for o in page.get("Contents", []))
        return sorted(out)

    def generations(self, hour: datetime) -> list[int]:
        """The generations of `hour` that have a manifest, ascending."""
        found = (_MANIFEST.search(k) for k in self.keys(manifest_prefix(hour)))
        return sorted(int(m.group(1)) for m in found if m)

    def manifest(self, hour: datetime, generation: int) -> Manifest:
        return _manifest.decode(self.read(manifest_key(hour, generation)))

    def newest_manifest(self, hour: datetime) -> Manifest | None:
        """The highest generation's manifest of `hour`, or None when it has none."""
        generations = self.generations(hour)
        return self.manifest(hour, generations[-1]) if generations else None

    def put_manifest(self, manifest: Manifest) -> bool:
        """Create the manifest (last of a generation's objects; conditional like the rest)."""
        return self.create(
            manifest_key(manifest.hour, manifest.generation), encode_manifest(manifest)
        )


def encode_manifest(manifest: Manifest) -> bytes:
    return _encode.encode(manifest)
