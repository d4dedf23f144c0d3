"""The lake's file formats: deterministic bytes, explicit schemas, the fingerprint."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.adapters.lake_formats import (
    OBSERVATIONS_SCHEMA,
    OFFICIAL_VALUES_SCHEMA,
    Fingerprint,
    ParquetBuilder,
    audit_avro,
    read_audit_avro,
    read_parquet,
)
from app.domain.lake import Manifest, ManifestObject, hour_object_key

T = datetime(2026, 1, 15, 14, tzinfo=UTC)


def _obs(n: int) -> list[tuple[object, ...]]:
    return [
        (
            f"S{i // 10:03d}",
            T + timedelta(minutes=i % 10),
            f"id{i}",
            "SRC",
            float(i),
            T,
            T,
            None if i % 2 else '{"a":1}',
            T,
        )
        for i in range(n)
    ]


def _bytes(rows: list[tuple[object, ...]], row_group_rows: int = 8) -> bytes:
    b = ParquetBuilder(OBSERVATIONS_SCHEMA, row_group_rows=row_group_rows)
    b.add(rows[:5])
    b.add(rows[5:])
    return b.finish()


def test_parquet_bytes_are_deterministic_and_round_trip() -> None:
    rows = _obs(30)
    first, second = _bytes(rows), _bytes(rows)
    assert first == second
    table = read_parquet(first)
    assert table.schema.equals(OBSERVATIONS_SCHEMA)
    assert table.num_rows == 30
    assert table.column("observation_id").to_pylist() == [f"id{i}" for i in range(30)]
    assert table.column("attributes").to_pylist()[:2] == ['{"a":1}', None]
    meta = pq.ParquetFile(pa.BufferReader(first)).metadata
    assert meta.num_row_groups == 4  # 30 rows in groups of 8
    assert meta.row_group(0).column(0).compression == "ZSTD"
    stats = meta.row_group(1).column(0).statistics
    assert (stats.min, stats.max) == ("S000", "S001")


def test_official_values_schema_keeps_lists_and_nullable_supersedes() -> None:
    b = ParquetBuilder(OFFICIAL_VALUES_SCHEMA)
    b.add(
        [("X", T, 1, 1.5, "official", "median", ["A", "B"], "[]", 1.0, 1.0, 1.0, 1.0, 1.0, None, T)]
    )
    b.add(
        [
            (
                "X",
                T,
                2,
                1.6,
                "official",
                "median",
                ["A"],
                '[{"source":"B"}]',
                0.9,
                1.0,
                1.0,
                1.0,
                1.0,
                1,
                T + timedelta(hours=2),
            )
        ]
    )
    table = read_parquet(b.finish())
    assert table.column("sources_used").to_pylist() == [["A", "B"], ["A"]]
    assert table.column("supersedes").to_pylist() == [None, 1]
    assert table.column("recorded_at").to_pylist()[1] == T + timedelta(hours=2)


def test_audit_avro_round_trips_exact_json_text_and_is_deterministic() -> None:
    records = [
        {
            "seq": 7,
            "actor": "a",
            "action": "x",
            "entity_type": "e",
            "entity_id": "1",
            "before": None,
            "after": '{"v": 1e20}',
            "at": T,
            "prev_hash": "0" * 64,
            "hash": "f" * 64,
        }
    ]
    data = audit_avro(records)
    assert data == audit_avro(records)
    back = read_audit_avro(data)
    assert back[0]["after"] == '{"v": 1e20}'
    assert back[0]["at"] == T
    assert back[0]["seq"] == 7
    # zstd-compressed, as the Parquet objects (the codec is named in the file's header).
    assert fastavro.reader(io.BytesIO(data)).metadata["avro.codec"] == "zstandard"


def test_fingerprint_ignores_order_and_sees_any_change() -> None:
    rows = _obs(50)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    a, b, c = Fingerprint(), Fingerprint(), Fingerprint()
    for r in rows:
        a.add(r)
    for r in shuffled:
        b.add(r)
    changed = [*rows[:-1], (*rows[-1][:4], 999.0, *rows[-1][5:])]
    for r in changed:
        c.add(r)
    assert a.hexdigest() == b.hexdigest()
    assert a.rows == b.rows == 50
    assert c.hexdigest() != a.hexdigest()


def test_manifest_objects_of_a_series_use_the_series_range() -> None:
    key = hour_object_key("observations", T, 1)
    assert key == "reference-data/2026/01/15/14/observations-g0001.parquet"
    obj = ManifestObject(
        key=key,
        dataset="observations",
        series=None,
        rows=3,
        bytes=10,
        sha256="x",
        first_series="B",
        last_series="D",
    )
    m = Manifest(hour=T, generation=1, created_at=T, datasets={}, objects=(obj,))
    assert m.objects_of("observations", "C") == [obj]
    assert m.objects_of("observations", "E") == []
    assert m.objects_of("official-values") == []
    with pytest.raises(ValueError, match="not a Parquet dataset"):
        hour_object_key("audit", T, 1)
