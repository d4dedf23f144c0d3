"""`TimestreamSink`: official values and quality metrics in Amazon Timestream (docs/timeseries.md).

boto3's `timestream-write` client (the service's AWS SDK) with the endpoint, region and
static credentials of `TimestreamSettings`; its calls block, so they run in a thread. In
AWS, `endpoint_url` is empty and botocore finds the ingestion endpoint through
DescribeEndpoints (endpoint discovery, which Timestream requires). With an `endpoint_url`
(locally the moto server) botocore does no endpoint discovery and calls that URL.

Delivery writes the records of `app.adapters.timestream_records` with WriteRecords, per
table in event order, at most 100 records a call (the service's limit). botocore's own
retries are off: throttling, internal errors and connection failures are retried here
with bounded exponential backoff, then the batch fails with `SinkUnavailable` (the sink
relay keeps its position and hands the events over again; rewriting a record is
harmless, see timestream_records).

Rejected records (RejectedRecordsException: the other records of the call are ingested):

- a rejection carrying `ExistingVersion` at least the record's `Version` means the table
  already holds this record (an earlier delivery of the same event) or a newer layout of
  it: the redelivery is done, not an error; it is logged at info and not counted;
- every other rejection (a time outside the memory store's retention with magnetic
  writes off, a limit exceeded, a conflicting value) is the record's own: it is logged,
  written as a JSON object to the rejected-records S3 location, and its event is counted
  in what `deliver` returns. So is a record that, written alone, fails validation
  (ValidationException refuses a whole call: its records are then written one by one).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import msgspec
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.adapters.aws_clients import endpoint_options, error_code
from app.adapters.s3_lake import S3Lake, ensure_bucket, s3_client
from app.adapters.timestream_records import Record, Table, records_for
from app.ports import SinkEvent, SinkUnavailable

if TYPE_CHECKING:
    from app.settings import TimestreamSettings

__all__ = [
    "MAX_RECORDS_PER_WRITE",
    "Rejection",
    "TimestreamSink",
    "ensure_timeseries",
    "rejected_report",
    "timestream_client",
    "timestream_sink",
]

_log = logging.getLogger("qis.timestream")

# WriteRecords takes at most 100 records a call.
MAX_RECORDS_PER_WRITE = 100
# Error codes another attempt of the same call may not meet.
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_encode = msgspec.json.Encoder(order="deterministic")


def timestream_client(settings: TimestreamSettings) -> Any:
    """A boto3 `timestream-write` client for the settings' endpoint, without retries of its
    own (`TimestreamSink` retries)."""
    kwargs: dict[str, Any] = {"region_name": settings.region}
    kwargs.update(endpoint_options(settings))
    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    return boto3.client("timestream-write", config=config, **kwargs)


@dataclass(frozen=True, slots=True)
class Rejection:
    """One record Timestream did not take: its event, the record, why."""

    event: SinkEvent
    record: Record
    reason: str
    existing_version: int | None = None

    @property
    def already_written(self) -> bool:
        """The table holds this record or a newer layout of it (a redelivery)."""
        version = int(self.record.get("Version", 1))
        return self.existing_version is not None and self.existing_version >= version


def rejected_report(database: str, table: str, rejections: Sequence[Rejection]) -> bytes:
    """The JSON object reporting rejected records: a function of what was rejected only,
    so a redelivery that is rejected again reports the same bytes under the same key."""
    return _encode.encode(
        {
            "sink": "timestream",
            "database": database,
            "table": table,
            "rejected": [
                {
                    "event_id": r.event.event_id,
                    "position": r.event.position,
                    "topic": r.event.topic,
                    "reason": r.reason,
                    "existing_version": r.existing_version,
                    "record": r.record,
                }
                for r in rejections
            ],
        }
    )


def report_key(table: str, rejections: Sequence[Rejection], body: bytes) -> str:
    """`<table>/<first position>-<last position>-<digest>.json` (20-digit positions)."""
    first = min(r.event.position for r in rejections)
    last = max(r.event.position for r in rejections)
    digest = hashlib.sha256(body).hexdigest()[:16]
    return f"{table}/{first:020d}-{last:020d}-{digest}.json"


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class TimestreamSink:
    """The `EventSink` named "timestream": every event's records, per table, in event order.

    `rejected` is the S3 location (bucket and key prefix) of the rejected-records reports.
    `sleep` is the pause between attempts (tests pass one that records the delays).
    """

    name = "timestream"

    def __init__(
        self,
        client: Any,
        rejected: S3Lake,
        *,
        database: str,
        tables: Mapping[Table, str],
        batch_size: int = 100,
        max_attempts: int = 5,
        retry_base_seconds: float = 0.2,
        retry_max_seconds: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.rejected = rejected
        self.database = database
        self.tables = dict(tables)
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self._sleep = sleep

    async def deliver(self, events: Sequence[SinkEvent]) -> int:
        """Write every event's records or raise `SinkUnavailable`; return how many events
        had a record rejected for what it is (reported to S3 and left out)."""
        by_table: dict[Table, list[tuple[SinkEvent, Record]]] = {}
        for event in events:
            for table, record in records_for(event.event):
                by_table.setdefault(table, []).append((event, record))
        refused: set[str] = set()
        for table, items in by_table.items():
            rejections: list[Rejection] = []
            for chunk in _chunks(items, MAX_RECORDS_PER_WRITE):
                rejections.extend(await self._write(table, chunk))
            written = [r for r in rejections if r.already_written]
            reported = [r for r in rejections if not r.already_written]
            if written:
                _log.info(
                    "timestream records already written",
                    extra={"table": self.tables[table], "records": len(written)},
                )
            if reported:
                await self._report(table, reported)
                refused.update(r.event.event_id for r in reported)
        return len(refused)

    def _delay(self, attempt: int) -> float:
        return float(min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (attempt - 1)))

    async def _write(
        self, table: Table, chunk: Sequence[tuple[SinkEvent, Record]]
    ) -> list[Rejection]:
        """One WriteRecords call (retried); the records it rejected."""
        name = self.tables[table]
        records = [record for _event, record in chunk]
        failure: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                await asyncio.to_thread(
                    self.client.write_records,
                    DatabaseName=self.database,
                    TableName=name,
                    Records=records,
                )
                return []
            except ClientError as exc:
                code = error_code(exc)
                if code == "RejectedRecordsException":
                    return self._rejections(chunk, exc.response.get("RejectedRecords", []))
                if code == "ValidationException":
                    return await self._isolate(table, chunk, exc)
                if code not in RETRYABLE_CODES:
                    raise SinkUnavailable(f"Timestream {name}: {code}: {exc}") from exc
                failure = exc
            except BotoCoreError as exc:  # connection refused, timed out, endpoint discovery
                failure = exc
            if attempt < self.max_attempts:
                await self._sleep(self._delay(attempt))
        raise SinkUnavailable(
            f"Timestream {name}: not written after {self.max_attempts} attempts: {failure}"
        ) from failure

    async def _isolate(
        self, table: Table, chunk: Sequence[tuple[SinkEvent, Record]], exc: ClientError
    ) -> list[Rejection]:
        """A call refused as invalid: its records one by one, so only the invalid ones are
        rejected (a single record refused alone is rejected for what it is)."""
        if len(chunk) == 1:
            event, record = chunk[0]
            message = str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
            return [Rejection(event, record, f"ValidationException: {message}")]
        rejections: list[Rejection] = []
        for item in chunk:
            rejections.extend(await self._write(table, [item]))
        return rejections

    @staticmethod
    def _rejections(
        chunk: Sequence[tuple[SinkEvent, Record]], rejected: Sequence[Mapping[str, Any]]
    ) -> list[Rejection]:
        out = []
        for entry in rejected:
            index = int(entry.get("RecordIndex", -1))
            if not 0 <= index < len(chunk):
                # An index outside the call cannot be attributed: not knowing which record
                # is missing, the whole batch is retried later.
                raise SinkUnavailable(f"Timestream rejected record index {index} of {len(chunk)}")
            event, record = chunk[index]
            existing = entry.get("ExistingVersion")
            out.append(
                Rejection(
                    event,
                    record,
                    str(entry.get("Reason", "")),
                    None if existing is None else int(existing),
                )
            )
        return out

    async def _report(self, table: Table, rejections: Sequence[Rejection]) -> None:
        name = self.tables[table]
        body = rejected_report(self.database, name, rejections)
        key = report_key(name, rejections, body)
        for r in rejections:
            _log.warning(
                "timestream record rejected",
                extra={
                    "table": name,
                    "event_id": r.event.event_id,
                    "position": r.event.position,
                    "reason": r.reason[:300],
                },
            )
        try:
            await asyncio.to_thread(self.rejected.create, key, body)
        except (BotoCoreError, ClientError) as exc:
            # Unreported rejections must not be skipped: the batch is delivered again.
            raise SinkUnavailable(
                f"rejected Timestream records not reported to s3://{self.rejected.bucket}/"
                f"{self.rejected.prefix}{key}: {exc}"
            ) from exc


def timestream_sink(settings: TimestreamSettings) -> TimestreamSink | None:
    """The sink the settings describe, or None when Timestream is off."""
    if not settings.enabled:
        return None
    return TimestreamSink(
        timestream_client(settings),
        S3Lake(s3_client(settings), settings.rejected_bucket, settings.rejected_prefix),
        database=settings.database,
        tables={
            "official_values": settings.official_values_table,
            "quality_metrics": settings.quality_metrics_table,
        },
        batch_size=settings.batch_size,
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
    )


# The prefix of the rejected-data reports Timestream itself writes for magnetic store
# writes (asynchronous), beside the adapter's own `rejected_prefix`.
MAGNETIC_REJECTED_PREFIX = "rejected-writes/"


def _missing(exc: ClientError) -> bool:
    return error_code(exc) == "ResourceNotFoundException"


def ensure_timeseries(
    settings: TimestreamSettings, client: Any = None, s3: Any = None
) -> list[tuple[str, str]]:
    """Create the rejected-records bucket, the database and both tables when missing, and
    set the tables' retention when it differs from the settings; return each resource
    with "created", "updated" or "exists" (idempotent, like `lake buckets`).

    The database is looked up before it is created: moto's CreateDatabase replaces an
    existing database (and drops its tables) where AWS answers ConflictException.
    """
    client = client or timestream_client(settings)
    s3 = s3 or s3_client(settings)
    bucket = settings.rejected_bucket
    states = [
        (f"s3://{bucket}", "created" if ensure_bucket(s3, bucket, settings.region) else "exists")
    ]
    database = settings.database
    try:
        client.describe_database(DatabaseName=database)
        states.append((database, "exists"))
    except ClientError as exc:
        if not _missing(exc):
            raise
        try:
            client.create_database(DatabaseName=database)
            states.append((database, "created"))
        except ClientError as conflict:
            if error_code(conflict) != "ConflictException":
                raise
            states.append((database, "exists"))
    tables = (
        (
            settings.official_values_table,
            settings.official_values_memory_hours,
            settings.official_values_magnetic_days,
        ),
        (
            settings.quality_metrics_table,
            settings.quality_metrics_memory_hours,
            settings.quality_metrics_magnetic_days,
        ),
    )
    for table, memory_hours, magnetic_days in tables:
        retention = {
            "MemoryStoreRetentionPeriodInHours": memory_hours,
            "MagneticStoreRetentionPeriodInDays": magnetic_days,
        }
        magnetic = {
            "EnableMagneticStoreWrites": True,
            "MagneticStoreRejectedDataLocation": {
                "S3Configuration": {
                    "BucketName": bucket,
                    "ObjectKeyPrefix": MAGNETIC_REJECTED_PREFIX,
                    "EncryptionOption": "SSE_S3",
                }
            },
        }
        where = f"{database}.{table}"
        try:
            found = client.describe_table(DatabaseName=database, TableName=table)["Table"]
        except ClientError as exc:
            if not _missing(exc):
                raise
            client.create_table(
                DatabaseName=database,
                TableName=table,
                RetentionProperties=retention,
                MagneticStoreWriteProperties=magnetic,
            )
            states.append((where, "created"))
            continue
        current = {k: int(v) for k, v in found.get("RetentionProperties", {}).items()}
        if current != retention:
            client.update_table(
                DatabaseName=database,
                TableName=table,
                RetentionProperties=retention,
                MagneticStoreWriteProperties=magnetic,
            )
            states.append((where, "updated"))
        else:
            states.append((where, "exists"))
    return states
