"""Lake query latency: one series over a day, and every series over one hour.

    .venv/bin/python -m benchmarks.e2e.lake_query [--series 10000] [--snaps 12]
        [--hours 24] [--repeat 5] [--endpoint http://127.0.0.1:59000]
        [--out benchmarks/results/lake-query.md]

Synthetic official values (`--series` x `--snaps` per hour x `--hours`, every fourth
snap corrected by a version 2 recorded 30 minutes later) are written in the archive's
layout and formats (one Parquet object per dataset-hour, sorted by series, the row
groups of app/adapters/lake_formats.py, a manifest per hour) to a bucket of its own on
the S3 endpoint (the stack's moto server by default). Then, through the lake's query
store (app/adapters/lake_reader.py: manifests, row-group pruning, DuckDB):

- one series, one day: the history page of 1,000 points (latest, and as of a time
  between the versions), and one as-of point read;
- every series, one hour: the panel (each series' value per snap as known at a time).

Each read is repeated `--repeat` times (median and min reported) with what it scanned.
Loopback only; the bucket is emptied and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.adapters.lake_formats import OFFICIAL_VALUES_SCHEMA, ParquetBuilder
from app.adapters.lake_reader import LakeFiles, LakeQueries, LakeReader, ScanReport
from app.adapters.s3_lake import S3Lake, encode_manifest, s3_client
from app.domain.lake import (
    HOUR,
    OFFICIAL_VALUES,
    DatasetSummary,
    Manifest,
    ManifestObject,
    hour_object_key,
    manifest_key,
)
from app.settings import LakeSettings

DAY = datetime(2026, 1, 15, tzinfo=UTC)
EXCLUDED = '[{"source":"c","reason":"outlier"}]'


def hour_rows(names: list[str], hour: datetime, snaps: int) -> list[tuple[Any, ...]]:
    step = HOUR / snaps
    rows: list[tuple[Any, ...]] = []
    for n, name in enumerate(names):
        for i in range(snaps):
            snap = hour + i * step
            value = 100.0 + n * 0.001 + i * 0.01
            rows.append(
                (name, snap, 1, value, "official", "median", ["a", "b"], EXCLUDED, 1.0, 1.0,
                 0.9, 1.0, 1.0, None, snap + timedelta(seconds=5))
            )  # fmt: skip
            if i % 4 == 1:
                rows.append(
                    (name, snap, 2, value + 0.5, "suspect", "median", ["a", "b", "c"], "[]",
                     0.6667, 1.0, 0.9, 0.6667, 1.0, 1, snap + timedelta(minutes=30))
                )  # fmt: skip
    return rows


def write_hour(lake: S3Lake, hour: datetime, rows: list[tuple[Any, ...]]) -> int:
    builder = ParquetBuilder(OFFICIAL_VALUES_SCHEMA)
    builder.add(rows)
    data = builder.finish()
    key = hour_object_key(OFFICIAL_VALUES, hour, 1)
    lake.create(key, data)
    obj = ManifestObject(
        key=key, dataset=OFFICIAL_VALUES, series=None, rows=len(rows), bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(), first_series=rows[0][0],
        last_series=rows[-1][0],
    )  # fmt: skip
    manifest = Manifest(
        hour=hour,
        generation=1,
        created_at=datetime.now(UTC),
        datasets={OFFICIAL_VALUES: DatasetSummary(rows=len(rows), fingerprint="")},
        objects=(obj,),
    )
    lake.create(manifest_key(hour, 1), encode_manifest(manifest))
    return len(data)


def timed(
    repeat: int, read: Callable[[], int], reports: list[ScanReport]
) -> tuple[float, float, int, ScanReport]:
    seconds = []
    rows = 0
    for _ in range(repeat):
        reports.clear()
        t0 = time.perf_counter()
        rows = read()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), min(seconds), rows, reports[-1]


def point(store: LakeQueries, series: str, snap: datetime) -> int:
    """One as-of point read, before the snap's correction: version 1 (one row)."""
    found = asyncio.run(store.as_of(series, snap, snap + timedelta(minutes=1)))
    assert found is not None
    assert found.version == 1
    return 1


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--snaps", type=int, default=12, help="snaps per series and hour")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--endpoint", default="http://127.0.0.1:59000")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    settings = LakeSettings(
        endpoint_url=args.endpoint,
        bucket=f"bench-lake-query-{uuid.uuid4().hex[:10]}",
        access_key_id="testing",
        secret_access_key="testing",  # noqa: S106 (moto accepts any key)
    )
    client = s3_client(settings)
    client.create_bucket(Bucket=settings.bucket)
    lake = S3Lake(client, settings.bucket)
    names = [f"S{i:06d}" for i in range(args.series)]
    probe = names[len(names) // 2]
    results: list[tuple[str, float, float, int, ScanReport]] = []
    try:
        t0 = time.perf_counter()
        size = 0
        total = 0
        for h in range(args.hours):
            rows = hour_rows(names, DAY + h * HOUR, args.snaps)
            total += len(rows)
            size += write_hour(lake, DAY + h * HOUR, rows)
        written = time.perf_counter() - t0
        reports: list[ScanReport] = []
        store = LakeQueries(LakeReader(LakeFiles.from_settings(settings)), reports.append)
        day_end = DAY + timedelta(hours=args.hours)
        # Times between a snap's versions: the corrections of the last snaps not yet known.
        late_in_day = day_end - timedelta(minutes=20)
        after_hour = DAY + HOUR + timedelta(minutes=10)
        snap = DAY + HOUR / args.snaps  # a corrected snap, read before its correction
        for label, read in (
            (
                "one series, one day: history, latest",
                lambda: len(store.history_sync(probe, DAY, day_end, "raw", None, 1000)),
            ),
            (
                "one series, one day: history as of a time",
                lambda: len(store.history_sync(probe, DAY, day_end, "raw", late_in_day, 1000)),
            ),
            (
                "one series, one day: history, 1h buckets",
                lambda: len(store.history_sync(probe, DAY, day_end, "1h", None, 1000)),
            ),
            (
                "one series: one point as of a time",
                lambda: point(store, probe, snap),
            ),
            (
                f"{args.series:,} series, one hour: panel, latest",
                lambda: store.panel(DAY, DAY + HOUR).num_rows,
            ),
            (
                f"{args.series:,} series, one hour: panel as of a time",
                lambda: store.panel(DAY, DAY + HOUR, as_of=after_hour).num_rows,
            ),
        ):
            median, best, count, report = timed(args.repeat, read, reports)
            results.append((label, median, best, count, report))
    finally:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=settings.bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=settings.bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=settings.bucket)

    lines = [
        f"## Lake query latency, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `.venv/bin/python -m benchmarks.e2e.lake_query --series {args.series} "
        f"--snaps {args.snaps} --hours {args.hours} --repeat {args.repeat}`",
        f"- commit: {commit()}; machine: {platform.machine()}, 2 CPUs shared with other work, "
        f"{platform.platform()}; S3: the stack's moto server on loopback",
        f"- lake: {args.hours} hours x {args.series:,} series x {args.snaps} snaps, "
        f"{total:,} official-value rows (every fourth snap corrected), one object per hour "
        f"({size / args.hours / 1e6:.1f} MB each, {size / 1e6:.0f} MB in all), written in "
        f"{written:.0f} s",
        f"- each read {args.repeat} times, from a fresh DuckDB connection; manifests and "
        "footers are read again every time (no cache)",
        "",
        "| read | median s | min s | rows | hours | objects | row groups scanned / total "
        "| bytes scanned |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, median, best, count, r in results:
        lines.append(
            f"| {label} | {median:.3f} | {best:.3f} | {count:,} | {r.hours} | "
            f"{len(r.objects)} | {r.row_groups} / {r.row_groups_total} | {r.bytes:,} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        path = Path(args.out)
        path.write_text(text + "\n" + (path.read_text() if path.exists() else ""))


if __name__ == "__main__":
    main()
