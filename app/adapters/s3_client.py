"""An S3 client for the lake's and the backups' buckets (QIS_LAKE__*), and streaming
transfers that hash what they move.

Locally the endpoint is the stack's S3 (moto server) with static keys; in AWS the endpoint
is empty (the region's) and the credentials are the default chain's (the pod's IAM role).
Transfers go through boto3's managed transfer (multipart above `PART_BYTES`), reading and
writing file objects chunk by chunk, so memory stays bounded by the part size times the
transfer's concurrency whatever the object's size.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from app.settings import LakeSettings

# At DEBUG botocore logs request signatures.
for _name in ("botocore", "boto3", "s3transfer"):
    logging.getLogger(_name).setLevel(logging.WARNING)

PART_BYTES = 16 * 1024 * 1024
TRANSFER = TransferConfig(
    multipart_threshold=PART_BYTES,
    multipart_chunksize=PART_BYTES,
    max_concurrency=4,
    io_chunksize=1024 * 1024,
)


def s3_client(lake: LakeSettings) -> Any:
    """A boto3 S3 client for the lake settings' endpoint, region and credentials."""
    options: dict[str, Any] = {
        "region_name": lake.region,
        "config": Config(
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # Path-style on a custom endpoint (moto, MinIO): no bucket DNS names needed.
            s3={"addressing_style": "path" if lake.endpoint_url else "auto"},
        ),
    }
    if lake.endpoint_url:
        options["endpoint_url"] = lake.endpoint_url
    if lake.access_key_id:
        options["aws_access_key_id"] = lake.access_key_id
        options["aws_secret_access_key"] = lake.secret_access_key
    return boto3.client("s3", **options)


def is_missing(exc: ClientError) -> bool:
    """The error of a key or bucket that does not exist."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}


class HashingReader:
    """A file object's reads, hashed (SHA-256) and counted; `on_read(total)` after each."""

    def __init__(self, source: IO[bytes], on_read: Callable[[int], None] = lambda _: None):
        self._source, self._on_read = source, on_read
        self._hash = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._hash.update(data)
        self.bytes += len(data)
        self._on_read(self.bytes)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class HashingWriter:
    """Writes to a file object, hashed (SHA-256) and counted; `on_write(total)` after each."""

    def __init__(self, target: IO[bytes], on_write: Callable[[int], None] = lambda _: None):
        self._target, self._on_write = target, on_write
        self._hash = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.bytes += len(data)
        written = self._target.write(data)
        self._on_write(self.bytes)
        return written

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under `prefix` (all pages)."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", ())]
    return keys


def upload_stream(
    client: Any, source: IO[bytes], bucket: str, key: str, on_read: Callable[[int], None]
) -> HashingReader:
    """Stream `source` (a pipe will do) to `bucket/key`; the reader tells its size and hash."""
    reader = HashingReader(source, on_read)
    client.upload_fileobj(reader, bucket, key, Config=TRANSFER)
    return reader


def download_stream(
    client: Any, bucket: str, key: str, target: IO[bytes], on_write: Callable[[int], None]
) -> HashingWriter:
    """Stream `bucket/key` into `target`; the writer tells its size and hash. Parts are
    fetched one after the other (a non-seekable writer needs them in order)."""
    writer = HashingWriter(target, on_write)
    sequential = TransferConfig(
        multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=1
    )
    client.download_fileobj(bucket, key, writer, Config=sequential)
    return writer
