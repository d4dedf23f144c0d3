"""The "many small files" question of the lake: one Parquet object per series-hour against
one object per hour holding every series (sorted by series, row-group statistics).

    .venv/bin/python -m benchmarks.e2e.lake_layout [--series 10000] [--snaps 12]
        [--sources 3] [--row-groups 4096,16384,65536] [--endpoint http://127.0.0.1:59000]
        [--out benchmarks/results/lake.md]

Synthetic observations of one hour (`--series` x `--snaps` x `--sources` rows, the
observations schema of app/adapters/lake_formats.py, zstd) are written to a bucket of
its own on the S3 endpoint (the stack's moto server by default) both ways, then read back
with pyarrow's S3 filesystem: one series, and every series. Reports PUT count, bytes,
write and read times. Loopback only; the bucket is emptied and deleted at the end.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs

from app.adapters.lake_formats import OBSERVATIONS_SCHEMA, ParquetBuilder

HOUR = datetime(2026, 1, 15, 14, tzinfo=UTC)


def rows_of(series: str, snaps: int, sources: int) -> list[tuple[Any, ...]]:
    out = []
    step = timedelta(seconds=3600 // snaps)
    for i in range(snaps):
        snap = HOUR + i * step
        for s in range(sources):
            out.append(
                (
                    series,
                    snap,
                    f"{series}-{i}-{s}-{uuid.uuid4().hex[:16]}",
                    f"SRC{s}",
                    100.0 + i * 0.01 + s * 0.001,
                    snap + timedelta(seconds=1),
                    snap + timedelta(seconds=2),
                    '{"venue":"X"}' if s == 0 else None,
                    snap + timedelta(seconds=3),
                )
            )
    return out


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
    ap.add_argument("--snaps", type=int, default=12)
    ap.add_argument("--sources", type=int, default=3)
    ap.add_argument("--row-groups", default="4096,16384,65536")
    ap.add_argument("--endpoint", default="http://127.0.0.1:59000")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (moto accepts any key)
    )
    host = args.endpoint.split("://", 1)[1]
    pafs = fs.S3FileSystem(
        endpoint_override=host,
        scheme="http",
        access_key="testing",
        secret_key="testing",  # noqa: S106
        region="us-east-1",
    )
    bucket = f"bench-layout-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    names = [f"S{i:06d}" for i in range(args.series)]
    data = {n: rows_of(n, args.snaps, args.sources) for n in names}
    total_rows = sum(len(r) for r in data.values())
    probe = names[len(names) // 2]
    results: list[dict[str, Any]] = []
    try:
        # One object per series-hour.
        t0 = time.perf_counter()
        size = 0
        for n in names:
            b = ParquetBuilder(OBSERVATIONS_SCHEMA)
            b.add(data[n])
            body = b.finish()
            size += len(body)
            s3.put_object(Bucket=bucket, Key=f"per-series/{n}/observations.parquet", Body=body)
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        one = pq.read_table(f"{bucket}/per-series/{probe}/observations.parquet", filesystem=pafs)
        read_one = time.perf_counter() - t0
        t0 = time.perf_counter()
        tables = [
            pq.read_table(f"{bucket}/per-series/{n}/observations.parquet", filesystem=pafs)
            for n in names
        ]
        read_all = time.perf_counter() - t0
        assert one.num_rows == args.snaps * args.sources
        assert sum(t.num_rows for t in tables) == total_rows
        results.append(
            {
                "layout": "one object per series-hour",
                "puts": len(names),
                "bytes": size,
                "write": write,
                "read_one": read_one,
                "read_all": read_all,
            }
        )
        del tables
        # One object per hour, sorted by series.
        for rg in (int(x) for x in args.row_groups.split(",")):
            t0 = time.perf_counter()
            b = ParquetBuilder(OBSERVATIONS_SCHEMA, row_group_rows=rg)
            for n in names:
                b.add(data[n])
            body = b.finish()
            key = f"bundled-{rg}/observations.parquet"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            write = time.perf_counter() - t0
            t0 = time.perf_counter()
            one = pq.read_table(
                f"{bucket}/{key}", filesystem=pafs, filters=pc.field("reference_data_id") == probe
            )
            read_one = time.perf_counter() - t0
            t0 = time.perf_counter()
            every = pq.read_table(f"{bucket}/{key}", filesystem=pafs)
            read_all = time.perf_counter() - t0
            assert one.num_rows == args.snaps * args.sources
            assert every.num_rows == total_rows
            groups = pq.ParquetFile(pa.BufferReader(body)).metadata.num_row_groups
            results.append(
                {
                    "layout": f"one object per hour, row groups of {rg:,} rows ({groups})",
                    "puts": 1,
                    "bytes": len(body),
                    "write": write,
                    "read_one": read_one,
                    "read_all": read_all,
                }
            )
    finally:
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=bucket)

    lines = [
        f"## Layout: {args.series:,} series x 1 hour, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `.venv/bin/python -m benchmarks.e2e.lake_layout --series {args.series} "
        f"--snaps {args.snaps} --sources {args.sources} --row-groups {args.row_groups}`",
        f"- commit: {commit()}; machine: {platform.machine()}, 2 CPUs, {platform.platform()};"
        f" S3: the stack's moto server on loopback (shared with other work)",
        f"- {total_rows:,} observations ({args.snaps} snaps x {args.sources} sources per "
        "series), zstd; reads with pyarrow's S3FileSystem, one series by a filter on "
        "`reference_data_id` (row-group statistics)",
        "",
        "| layout | PUTs | bytes | write s | read one series s | read all series s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['layout']} | {r['puts']:,} | {r['bytes']:,} | {r['write']:.2f} | "
            f"{r['read_one']:.3f} | {r['read_all']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        path = Path(args.out)
        path.write_text(text + "\n" + (path.read_text() if path.exists() else ""))


if __name__ == "__main__":
    main()
