"""Dead letters: a record the pipeline could not use, with its error, stage and origin.

A dead letter carries the original record (key, value and headers, base64 in JSON), so
`qis dlq replay` can re-submit it unchanged once the cause is fixed: observation ids are
content-derived, so a replayed record is stored at most once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

DEAD_LETTER_SCHEMA_VERSION = 2

# Where the record failed:
# - decode: not a valid ingestion-log record (JSON, schema version, key, bounds);
# - store: inserting its observations failed (the database refused a value);
# - reconcile: reconciling, scoring or journaling a snap it touched failed;
# - commit: the batch's commit failed for this record alone (bisected);
# - replay: `qis dlq replay` could not re-submit it.
DeadLetterStage = Literal["decode", "store", "reconcile", "commit", "replay"]
DEAD_LETTER_STAGES: tuple[DeadLetterStage, ...] = (
    "decode",
    "store",
    "reconcile",
    "commit",
    "replay",
)


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One record set aside. Version-1 letters (no stage, time or headers) still decode:
    they came from the decode stage, the only one that dead-lettered then."""

    schema_version: int = DEAD_LETTER_SCHEMA_VERSION
    error: str
    stage: DeadLetterStage = "decode"
    dead_lettered_at: datetime | None = None
    reference_data_id: str | None = None  # the record key, when it is text
    origin_topic: str
    origin_partition: int
    origin_offset: int
    origin_timestamp_ms: int | None = None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = msgspec.field(default_factory=list)


# Kafka headers of a dead-letter record (the value is the encoded DeadLetter).
ERROR_HEADER = "qis-error"
STAGE_HEADER = "qis-stage"
# Set on a record re-submitted by `qis dlq replay`: "<dlq topic>:<partition>:<offset>".
REPLAYED_FROM_HEADER = "qis-replayed-from"


def storable_text(text: str, limit: int = 2000) -> str:
    """`text` safe to store anywhere (PostgreSQL text, JSON, Kafka headers): lone
    surrogates and NUL written as escapes, at most `limit` characters. Error messages
    quote the data that caused them, and that data may hold exactly these."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return safe[:limit]


def error_text(exc: BaseException) -> str:
    """An exception as one storable line: `Type: message`."""
    return storable_text(f"{type(exc).__name__}: {exc}")
