"""Streaming transfers to and from S3 that hash what they move (the database backups).

boto3's managed transfer (multipart above `PART_BYTES`) reads and writes file objects
chunk by chunk, so memory stays bounded by the part size times the transfer's
concurrency whatever the object's size. The client is the lake's
(`app.adapters.s3_lake.s3_client`: QIS_LAKE__* endpoint, region, credentials).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import IO, Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

PART_BYTES = 16 * 1024 * 1024
TRANSFER = TransferConfig(
    multipart_threshold=PART_BYTES,
    multipart_chunksize=PART_BYTES,
    max_concurrency=4,
    io_chunksize=1024 * 1024,
)


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
