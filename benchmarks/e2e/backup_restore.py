"""`qis backup` and `qis restore-drill` on a database of a given size: size and times.

    .venv/bin/python -m benchmarks.e2e.backup_restore [--observations 1000000]
        [--audit-records 100000] [--jobs 2]

Creates a database of its own on the stack's PostgreSQL (dropped at the end) with
`--observations` observations (1,000 series, 3 sources a snap, one snap a minute), one
official value per series and snap, and `--audit-records` chained audit records; backs it
up into a bucket of its own on the stack's S3 (deleted at the end) and runs the restore
drill on it. Prints one JSON object: the database's size, the dump's size, the backup's
time, the drill's steps (download, cluster start, pg_restore, checks) and the peak
resident memory of this process (the upload and the download run in it, pg_dump and
pg_restore are children).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from app.adapters.postgres import audit
from app.adapters.postgres.migrate import create_migrated_database, drop_database
from app.adapters.s3_lake import S3Lake, s3_client
from app.entrypoints.backup import run_backup, run_restore_drill
from app.entrypoints.progress import Progress
from app.ports import AuditEntry
from app.settings import load_settings

SERIES = 1000
SOURCES = 3
START = datetime(2026, 11, 1, tzinfo=UTC)


async def fill(dsn: str, observations: int, audit_records: int) -> None:
    snaps = max(1, observations // (SERIES * SOURCES))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO reference_data (reference_data_id, config)
               SELECT 'BENCH.' || s, '{}' FROM generate_series(1, $1) s""",
            SERIES,
        )
        await conn.execute(
            """INSERT INTO observations (observation_id, reference_data_id, source, snap,
                   value, observed_at, received_at)
               SELECT md5(s || '/' || k || '/' || src), 'BENCH.' || s, 'src' || src,
                      $1::timestamptz + k * interval '1 minute', 100 + random(),
                      $1::timestamptz + k * interval '1 minute',
                      $1::timestamptz + k * interval '1 minute'
                 FROM generate_series(1, $2) s, generate_series(0, $3 - 1) k,
                      generate_series(1, $4) src""",
            START,
            SERIES,
            snaps,
            SOURCES,
        )
        await conn.execute(
            """INSERT INTO official_values (reference_data_id, snap, version, value, status,
                   method, sources_used, sources_excluded, quality_score, completeness,
                   timeliness, consistency, validity, recorded_at)
               SELECT 'BENCH.' || s, $1::timestamptz + k * interval '1 minute', 1,
                      100 + random(), 'official', 'median', '{src1,src2,src3}', '[]',
                      1, 1, 1, 1, 1, $1::timestamptz + k * interval '61 seconds'
                 FROM generate_series(1, $2) s, generate_series(0, $3 - 1) k""",
            START,
            SERIES,
            snaps,
        )
        batch = 5000
        for first in range(0, audit_records, batch):
            async with conn.transaction():
                at = await audit.lock_journal(conn)
                await audit.append_records(
                    conn,
                    [
                        AuditEntry(
                            actor="bench",
                            action="official_value.published",
                            entity_type="official_value",
                            entity_id=f"BENCH.{n % SERIES}/{START + timedelta(minutes=n)}",
                            before=None,
                            after={"value": 100.0 + n % 7, "version": 1},
                        )
                        for n in range(first, min(first + batch, audit_records))
                    ],
                    at,
                )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def main(args: argparse.Namespace) -> dict[str, object]:
    base = load_settings(os.environ)
    name = f"qis_bench_backup_{uuid.uuid4().hex[:8]}"
    bucket = f"qis-bench-backups-{uuid.uuid4().hex[:8]}"
    lake = msgspec.structs.replace(
        base.lake,
        backup_bucket=bucket,
        access_key_id=base.lake.access_key_id or "testing",
        secret_access_key=base.lake.secret_access_key or "testing",
    )
    client = s3_client(lake)
    client.create_bucket(Bucket=bucket)
    dsn = await create_migrated_database(base.db.writer_dsn, name, fresh=True)
    settings = msgspec.structs.replace(
        base,
        db=msgspec.structs.replace(base.db, writer_dsn=dsn, reader_dsn=dsn),
        lake=lake,
        backup=msgspec.structs.replace(base.backup, restore_jobs=args.jobs),
    )
    try:
        began = time.monotonic()
        await fill(dsn, args.observations, args.audit_records)
        filled = time.monotonic() - began
        conn = await asyncpg.connect(dsn)
        try:
            database_bytes = await conn.fetchval("SELECT pg_database_size(current_database())")
        finally:
            await conn.close()
        rss_before = peak_rss_mb()
        began = time.monotonic()
        manifest = await run_backup(settings, Progress("backup", steps=3, stream=sys.stderr))
        backup_seconds = time.monotonic() - began
        rss_after_backup = peak_rss_mb()
        report = await run_restore_drill(
            settings, Progress("restore-drill", steps=5, stream=sys.stderr)
        )
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}",
            "observations": manifest.tables["public.observations"],
            "official_values": manifest.tables["public.official_values"],
            "audit_records": manifest.tables["public.audit_log"],
            "fill_seconds": round(filled, 1),
            "database_mb": round(database_bytes / 1e6, 1),
            "dump_mb": round(manifest.dump.bytes / 1e6, 1),
            "backup_seconds": round(backup_seconds, 1),
            "drill_ok": report.ok,
            "drill_failures": report.failures,
            "drill_seconds": {k: round(v, 1) for k, v in report.timings.items()},
            "restore_jobs": args.jobs,
            "peak_rss_mb": {
                "before_backup": rss_before,
                "after_backup": rss_after_backup,
                "after_drill": peak_rss_mb(),
            },
        }
    finally:
        await drop_database(base.db.writer_dsn, name)
        for key in S3Lake(client, bucket).keys(""):
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--audit-records", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=2)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
