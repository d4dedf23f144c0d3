"""Fixed measurements (round numbers close to the local stack's) for model tests."""

from __future__ import annotations

from benchmarks.sizing.model import (
    CacheEntrySize,
    Measurements,
    QueryCost,
    TableFootprint,
    WritePath,
)


def table(
    name: str, rows: int, heap: float, indexes: dict[str, float], wal: float
) -> TableFootprint:
    return TableFootprint(
        table=name,
        rows=rows,
        heap_bytes=int(heap * rows),
        index_bytes={k: int(v * rows) for k, v in indexes.items()},
        wal_bytes=int(wal * rows),
        wal_records=rows * 2,
    )


def measurements() -> Measurements:
    return Measurements(
        measured_at="2026-01-15T14:00:00+00:00",
        environment={"postgresql": "15", "redis": "7", "cpu": "test", "cores": "2"},
        cache_entries=[
            CacheEntrySize(
                kind=k, example_key=k, value_bytes=b, memory_usage_bytes=b, bytes_per_entry=b
            )
            for k, b in [
                ("official", 600),
                ("version_list", 1000),
                ("history_page", 50_000),
                ("quality", 500),
                ("absent", 160),
                ("scope", 128),
            ]
        ],
        tables=[
            table("observations", 10_000, 180, {"observations_pkey": 90}, 400),
            table(
                "official_values",
                2_000,
                700,
                {"official_values_pkey": 60, "official_values_recorded_at_idx": 60},
                800,
            ),
            table("snaps", 2_000, 200, {"snaps_pkey": 60}, 200),
            table(
                "audit_log",
                4_000,
                700,
                {"audit_log_pkey": 40, "audit_log_entity_idx": 100},
                1_000,
            ),
            table("outbox", 6_000, 1_000, {"outbox_pkey": 40, "outbox_event_id_key": 90}, 1_200),
        ],
        # 2 audit rows per version (accepted + created) and 1 outbox row (its domain
        # event): no suspect version among the measured ones.
        write_path=WritePath(
            batches=20,
            observations=10_000,
            versions=2_000,
            audit_rows=4_000,
            outbox_rows=2_000,
            snap_rows=2_000,
            wall_seconds=2.0,
            worker_cpu_seconds=0.5,
            db_cpu_seconds=0.5,
        ),
        queries=[
            QueryCost(kind=k, calls=1000, wall_ms=ms * 2, db_cpu_ms=ms, rows=1)
            for k, ms in [
                ("latest", 0.05),
                ("version", 0.05),
                ("as_of", 0.05),
                ("history", 0.6),
                ("history_1h", 0.8),
                ("quality", 0.5),
            ]
        ],
    )
