"""Archive throughput and lake size: the archive job on a database and a bucket of its own.

    .venv/bin/python -m benchmarks.e2e.lake_archive [--series 2000] [--snaps 60]
        [--sources 3] [--hours 2] [--out benchmarks/results/lake.md]

Fills a fresh database (COPY) with `--hours` hours of `--series` series x `--snaps`
snaps x `--sources` observations, one official value per (series, snap) and an audit
record per official value, then runs the archive (`Archiver.archive_hour`, as the
scheduler does) into a fresh bucket on the stack's S3 endpoint (moto server), and again
(the idempotent re-run). Reports rows/s and MB/s of the first run, the lake's bytes per
million observations (observations objects only, and everything), and the re-run's time.
Loopback only; the database and the bucket are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from app.adapters.postgres.archive import PostgresArchiveSource
from app.adapters.postgres.migrate import create_migrated_database, drop_database
from app.adapters.s3_lake import S3Lake, s3_client
from app.domain.lake import AUDIT, OBSERVATIONS, OFFICIAL_VALUES
from app.services.archive import ArchivePolicy, Archiver
from app.settings import LakeSettings, load_settings

START = datetime(2026, 1, 15, 0, tzinfo=UTC)


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def fill(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    step = timedelta(seconds=3600 // args.snaps)
    observations: list[tuple[Any, ...]] = []
    versions: list[tuple[Any, ...]] = []
    audit: list[tuple[Any, ...]] = []
    seq = 0
    for h in range(args.hours):
        for i in range(args.snaps):
            snap = START + timedelta(hours=h) + i * step
            for s in range(args.series):
                series = f"S{s:06d}"
                for k in range(args.sources):
                    observations.append(
                        (
                            f"{series}-{h}-{i}-{k}-{uuid.uuid4().hex[:16]}",
                            series,
                            f"SRC{k}",
                            snap,
                            100.0 + s * 0.01 + k * 0.001 + i * 0.0001,
                            snap + timedelta(seconds=1),
                            snap + timedelta(seconds=2),
                            None,
                            snap + timedelta(seconds=3),
                        )
                    )
                versions.append(
                    (
                        series,
                        snap,
                        1,
                        100.0 + s * 0.01,
                        "official",
                        "median",
                        [f"SRC{k}" for k in range(args.sources)],
                        "[]",
                        1.0,
                        1.0,
                        1.0,
                        1.0,
                        1.0,
                        None,
                        snap + timedelta(seconds=61),
                    )
                )
                seq += 1
                audit.append(
                    (
                        "scheduler",
                        "official_value.created",
                        "official_value",
                        f"{series}/{snap.isoformat()}",
                        None,
                        f'{{"value": {100.0 + s * 0.01}}}',
                        snap + timedelta(seconds=61),
                        f"{seq - 1:064x}",
                        f"{seq:064x}",
                    )
                )
        # In chunks: bounded memory.
        await conn.copy_records_to_table(
            "observations",
            records=observations,
            columns=[
                "observation_id",
                "reference_data_id",
                "source",
                "snap",
                "value",
                "observed_at",
                "received_at",
                "attributes",
                "stored_at",
            ],
        )
        await conn.copy_records_to_table(
            "official_values",
            records=versions,
            columns=[
                "reference_data_id",
                "snap",
                "version",
                "value",
                "status",
                "method",
                "sources_used",
                "sources_excluded",
                "quality_score",
                "completeness",
                "timeliness",
                "consistency",
                "validity",
                "supersedes",
                "recorded_at",
            ],
        )
        await conn.copy_records_to_table(
            "audit_log",
            records=audit,
            columns=[
                "actor",
                "action",
                "entity_type",
                "entity_id",
                "before",
                "after",
                "at",
                "prev_hash",
                "hash",
            ],
        )
        observations, versions, audit = [], [], []
    await conn.execute("ANALYZE")
    return args.hours * args.snaps * args.series * args.sources


async def run(args: argparse.Namespace) -> str:
    settings = load_settings(os.environ)
    name = f"qis_bench_lake_{uuid.uuid4().hex[:8]}"
    dsn = await create_migrated_database(settings.db.writer_dsn, name)
    bucket = f"bench-lake-{uuid.uuid4().hex[:10]}"
    lake_cfg = LakeSettings(
        endpoint_url=settings.lake.endpoint_url,
        bucket=bucket,
        access_key_id=settings.lake.access_key_id or "testing",
        secret_access_key=settings.lake.secret_access_key or "testing",
    )
    client = s3_client(lake_cfg)
    client.create_bucket(Bucket=bucket)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            t0 = time.perf_counter()
            n_obs = await fill(conn, args)
            fill_s = time.perf_counter() - t0
        finally:
            await conn.close()
        archiver = Archiver(
            PostgresArchiveSource(pool, args.row_group_rows),
            S3Lake(client, bucket),
            ArchivePolicy(),
        )
        hours = [START + timedelta(hours=h) for h in range(args.hours)]
        t0 = time.perf_counter()
        results = [await archiver.archive_hour(h) for h in hours]
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = [await archiver.archive_hour(h) for h in hours]
        rerun_s = time.perf_counter() - t0
        assert all(r.state == "archived" for r in results)
        assert all(r.state == "unchanged" for r in again)
        lake = S3Lake(client, bucket)
        sizes = {OBSERVATIONS: 0, OFFICIAL_VALUES: 0, AUDIT: 0}
        rows = dict.fromkeys(sizes, 0)
        for h in hours:
            manifest = lake.manifest(h, 1)
            for o in manifest.objects:
                sizes[o.dataset] += o.bytes
                rows[o.dataset] += o.rows
        assert rows[OBSERVATIONS] == n_obs
        total_rows = sum(rows.values())
        total_bytes = sum(sizes.values())
    finally:
        await pool.close()
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket)
        await drop_database(settings.db.writer_dsn, name)

    mib = 1024 * 1024
    per_million = 1_000_000 / n_obs
    lines = [
        f"## Archive: {n_obs:,} observations in {args.hours} hours, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `.venv/bin/python -m benchmarks.e2e.lake_archive --series {args.series} "
        f"--snaps {args.snaps} --sources {args.sources} --hours {args.hours} "
        f"--row-group-rows {args.row_group_rows}`",
        f"- commit: {commit()}; machine: {platform.machine()}, 2 CPUs, {platform.platform()};"
        " PostgreSQL and S3 (moto server) of the local stack on the same machine, shared "
        "with other work",
        f"- data: {args.series:,} series x {args.snaps} snaps/hour x {args.sources} sources; "
        f"one official value and one audit record per (series, snap); filled by COPY in "
        f"{fill_s:.1f} s",
        "",
        "| measure | value |",
        "|---|---|",
        f"| rows archived (observations + official values + audit) | {total_rows:,} |",
        f"| archive time (first run, {args.hours} hours) | {first_s:.1f} s |",
        f"| throughput, rows | {total_rows / first_s:,.0f} rows/s |",
        f"| throughput, bytes written | {total_bytes / mib / first_s:.2f} MB/s |",
        f"| lake bytes, total | {total_bytes:,} |",
        f"| observations objects per million observations | "
        f"{sizes[OBSERVATIONS] * per_million / mib:.1f} MiB |",
        f"| everything per million observations (with their versions and audit) | "
        f"{total_bytes * per_million / mib:.1f} MiB |",
        f"| official values objects / audit objects | {sizes[OFFICIAL_VALUES]:,} / "
        f"{sizes[AUDIT]:,} bytes |",
        f"| re-run (nothing changed: export + compare, no write) | {rerun_s:.1f} s |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--snaps", type=int, default=60)
    ap.add_argument("--sources", type=int, default=3)
    ap.add_argument("--hours", type=int, default=2)
    ap.add_argument("--row-group-rows", type=int, default=LakeSettings().row_group_rows)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    text = asyncio.run(run(args))
    print(text)
    if args.out:
        path = Path(args.out)
        head, sep, rest = path.read_text().partition("\n## ")
        path.write_text(f"{head}\n{text}\n{sep.lstrip()}{rest}" if sep else head + "\n" + text)


if __name__ == "__main__":
    main()
