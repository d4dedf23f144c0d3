"""The lake's file formats: the explicit Parquet schemas of the official values and the
observations, the Avro schema of the audit records, how their bytes are made, and the
order-independent fingerprint a manifest keeps of each dataset (docs/lake.md).

The archive job writes with these and the lake readers read with them, so both agree on
column names and types. The bytes are deterministic: the same rows in the same order give
the same object, which is what makes a re-run's conditional write a no-op.

Columns, as the database holds them:

- official values: every version of a (series, snap), with `recorded_at` (the knowledge
  time of as-of reads); the five quality dimensions as the database reads them (the
  float columns, or for rows from before migration 0007 the same fields of the jsonb);
  `sources_used` a list, `sources_excluded` the JSON text of the exclusions;
- observations: every column, `attributes` as JSON text (null when absent);
- audit records: every column, `before`/`after` as the exact JSON text that was hashed
  (so `qis audit verify` can recompute the chain from the lake).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from typing import Any

import fastavro
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from app.domain.lake import AUDIT, OBSERVATIONS, OFFICIAL_VALUES

__all__ = [
    "AUDIT_AVRO_SCHEMA",
    "AVRO_CODEC",
    "OBSERVATIONS_SCHEMA",
    "OFFICIAL_VALUES_SCHEMA",
    "PARQUET_COMPRESSION",
    "PARQUET_SCHEMAS",
    "ROW_GROUP_ROWS",
    "Fingerprint",
    "ParquetBuilder",
    "audit_avro",
    "read_audit_avro",
    "read_parquet",
]

_TS = pa.timestamp("us", tz="UTC")

OFFICIAL_VALUES_SCHEMA = pa.schema(
    [
        pa.field("reference_data_id", pa.string(), nullable=False),
        pa.field("snap", _TS, nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("sources_used", pa.list_(pa.string()), nullable=False),
        pa.field("sources_excluded", pa.string(), nullable=False),  # JSON text
        pa.field("quality_score", pa.float64(), nullable=False),
        pa.field("completeness", pa.float64(), nullable=False),
        pa.field("timeliness", pa.float64(), nullable=False),
        pa.field("consistency", pa.float64(), nullable=False),
        pa.field("validity", pa.float64(), nullable=False),
        pa.field("supersedes", pa.int32(), nullable=True),
        pa.field("recorded_at", _TS, nullable=False),
    ]
)

OBSERVATIONS_SCHEMA = pa.schema(
    [
        pa.field("reference_data_id", pa.string(), nullable=False),
        pa.field("snap", _TS, nullable=False),
        pa.field("observation_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("observed_at", _TS, nullable=False),
        pa.field("received_at", _TS, nullable=False),
        pa.field("attributes", pa.string(), nullable=True),  # JSON text
        pa.field("stored_at", _TS, nullable=False),
    ]
)

PARQUET_SCHEMAS: dict[str, pa.Schema] = {
    OFFICIAL_VALUES: OFFICIAL_VALUES_SCHEMA,
    OBSERVATIONS: OBSERVATIONS_SCHEMA,
}

# Rows are sorted by series (then snap), so each row group's min/max statistics of
# `reference_data_id` let a reader of one series skip the others' row groups. Chosen by
# measurement (benchmarks/results/lake.md).
ROW_GROUP_ROWS = 16_384
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 3

AUDIT_AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "AuditRecord",
    "namespace": "qis.audit",
    "fields": [
        {"name": "seq", "type": "long"},
        {"name": "actor", "type": "string"},
        {"name": "action", "type": "string"},
        {"name": "entity_type", "type": "string"},
        {"name": "entity_id", "type": "string"},
        {"name": "before", "type": ["null", "string"]},  # JSON text, as hashed
        {"name": "after", "type": ["null", "string"]},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "prev_hash", "type": "string"},
        {"name": "hash", "type": "string"},
    ],
}
_PARSED_AUDIT = fastavro.parse_schema(AUDIT_AVRO_SCHEMA)
# zstd, as the Parquet objects (fastavro's codec through backports.zstd before Python
# 3.14): on 20,000 audit records 8 % smaller than deflate and 20 % faster to write, with
# the same bytes on every run.
AVRO_CODEC = "zstandard"
# A fixed sync marker (fastavro picks a random one by default): deterministic bytes.
_AVRO_SYNC = hashlib.sha256(b"qis-lake-audit").digest()[:16]


class ParquetBuilder:
    """One Parquet object built from rows arriving in batches (tuples in the schema's
    column order, already sorted), written row group by row group into memory."""

    def __init__(self, schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self._schema = schema
        self._row_group_rows = row_group_rows
        self._sink = io.BytesIO()
        self._writer = pq.ParquetWriter(
            self._sink,
            schema,
            compression=PARQUET_COMPRESSION,
            compression_level=PARQUET_COMPRESSION_LEVEL,
            write_statistics=True,
        )
        self._pending: list[Sequence[Any]] = []
        self.rows = 0

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self._pending.append(row)
            if len(self._pending) >= self._row_group_rows:
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        columns = list(zip(*self._pending, strict=True))
        batch = pa.record_batch(
            [pa.array(col, type=f.type) for col, f in zip(columns, self._schema, strict=True)],
            schema=self._schema,
        )
        self._writer.write_batch(batch, row_group_size=self._row_group_rows)
        self.rows += len(self._pending)
        self._pending = []

    def finish(self) -> bytes:
        self._flush()
        self._writer.close()
        return self._sink.getvalue()


def read_parquet(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


def audit_avro(records: Iterable[dict[str, Any]]) -> bytes:
    """The audit records (dicts with the schema's fields, in seq order) as Avro bytes."""
    sink = io.BytesIO()
    fastavro.writer(sink, _PARSED_AUDIT, records, codec=AVRO_CODEC, sync_marker=_AVRO_SYNC)
    return sink.getvalue()


def read_audit_avro(data: bytes) -> list[dict[str, Any]]:
    return [
        r
        for r in fastavro.reader(io.BytesIO(data), reader_schema=_PARSED_AUDIT)
        if isinstance(r, dict)
    ]


_MOD = 1 << 128
_encode = msgspec.json.Encoder()


class Fingerprint:
    """Order-independent fingerprint of a set of rows: the sum, modulo 2^128, of each
    row's SHA-256 (first 16 bytes), with the row count. Rows are unique (each dataset's
    key is part of its row), so the sum changes when any row is added, dropped or altered,
    whatever order the rows are read in."""

    def __init__(self) -> None:
        self._sum = 0
        self.rows = 0

    def add(self, row: Sequence[Any]) -> None:
        # msgspec writes a row as a JSON array; times as RFC 3339 (PostgreSQL's
        # timestamptz values arrive in UTC), lists as arrays.
        digest = hashlib.sha256(_encode.encode(row)).digest()
        self._sum = (self._sum + int.from_bytes(digest[:16], "big")) % _MOD
        self.rows += 1

    def hexdigest(self) -> str:
        return f"{self._sum:032x}"


DATASET_FORMATS = {OFFICIAL_VALUES: "parquet", OBSERVATIONS: "parquet", AUDIT: "avro"}
