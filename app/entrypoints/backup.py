"""`qis backup` and `qis restore-drill` (docs/backup.md).

`qis backup` dumps the database of QIS_DB__WRITER_DSN with `pg_dump -Fc` from one exported
snapshot, streams the dump into the backup bucket (multipart, memory bounded by the
part size) while hashing it, and writes the manifest (SHA-256, row counts per table, the
newest audit record, the migration version, the snapshot time) next to it, last.

`qis restore-drill` downloads the newest (or a named) backup, checks its SHA-256,
restores it with `pg_restore -j` into a fresh PostgreSQL cluster of its own (initdb in a
temporary directory, a free loopback port, deleted afterwards), checks the migrations,
the audit chain, the row counts against the manifest and the archived hours against the
lake's manifests, and prints the recovery point and the time the restore took.

`run_backup` and `run_restore_drill` are the commands without the command line, for tests
and scripts. `register(sub)` adds both to `qis`'s sub-parsers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from app.adapters.postgres.audit import stream_records
from app.adapters.postgres.backup import (
    Deadline,
    ToolError,
    archived_hours,
    audit_head,
    database_name,
    export_snapshot,
    find_pg_bin,
    hour_rows,
    libpq_target,
    retained_from,
    run_tool,
    stream_tool,
    table_counts,
    temporary_cluster,
    tool_version,
)
from app.adapters.postgres.migrate import bundled_migrations, migration_problems
from app.adapters.postgres.pool import connect
from app.adapters.s3_lake import S3Lake, s3_client
from app.adapters.s3_transfer import download_stream, is_missing, upload_stream
from app.domain import lake
from app.domain.backup import (
    BackupManifest,
    DumpObject,
    backup_id,
    compare_audit_head,
    compare_counts,
    database_prefix,
    dump_key,
    lake_hour_problem,
    manifest_key,
    newest_backup_id,
)
from app.entrypoints.progress import Progress
from app.entrypoints.unreachable import Unreachable, postgres
from app.services.audit import verify_audit_trail

if TYPE_CHECKING:
    from app.settings import Settings

_log = logging.getLogger("qis.backup")
EXIT_FAILED = 1
DUMP_METHOD = "pg_dump -Fc"
# The newest archived hours the drill compares with the lake's manifests.
LAKE_HOURS = 168


class BackupError(RuntimeError):
    """The backup or the drill cannot go on; `str()` is the line to print."""


def _s3_errors(what: str) -> contextlib.AbstractContextManager[None]:
    """S3's errors as one line: Unreachable (exit 2) when no connection could be made,
    BackupError otherwise."""

    @contextlib.contextmanager
    def wrap() -> Any:
        try:
            yield
        except EndpointConnectionError as exc:
            url = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
            where = f"{url.scheme}://{url.netloc}" if url.netloc else "its endpoint"
            raise Unreachable("S3", where, "could not connect") from exc
        except (ClientError, BotoCoreError) as exc:
            raise BackupError(f"{what}: {exc}") from exc

    return wrap()


def _megabytes(n: int) -> float:
    return round(n / 1e6, 1)


def _throughput(step: Any, started: float) -> Any:
    """An `on_read`/`on_write` callback reporting MB and MB/s to a progress step."""

    def report(total: int) -> None:
        seconds = max(time.monotonic() - started, 1e-6)
        step.update(done=_megabytes(total), unit="MB", rate=total / 1e6 / seconds)

    return report


# --- qis backup -----------------------------------------------------------------------


def _dump_and_upload(
    argv: list[str],
    env: dict[str, str],
    client: Any,
    bucket: str,
    key: str,
    deadline: Deadline,
    step: Any,
) -> tuple[int, str]:
    """Run pg_dump and stream its output to `bucket/key`; (bytes, sha256). A dump that
    fails leaves no object (nor a manifest: the backup does not exist)."""
    report = _throughput(step, time.monotonic())
    try:
        reader = stream_tool(
            argv,
            "pg_dump",
            deadline,
            env,
            lambda out: upload_stream(client, out, bucket, key, report),
        )
    except ToolError:
        with contextlib.suppress(ClientError, BotoCoreError):
            client.delete_object(Bucket=bucket, Key=key)
        raise
    return reader.bytes, reader.hexdigest()


async def run_backup(settings: Settings, progress: Progress) -> BackupManifest:
    """Back up the database of QIS_DB__WRITER_DSN; the manifest written, last."""
    deadline = Deadline(settings.backup.timeout_seconds)
    pg_bin = find_pg_bin(settings.backup.pg_bin)
    dsn, bucket = settings.db.writer_dsn, settings.lake.backup_bucket
    database = database_name(dsn)
    client = s3_client(settings.lake)
    target, env = await libpq_target(dsn, settings.db)
    dump_version = tool_version(pg_bin, "pg_dump", deadline)
    started_at = datetime.now(UTC)
    conn = await postgres(connect(dsn, settings.db), dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            with progress.step("snapshot: row counts, audit head, migration version"):
                snapshot = await export_snapshot(conn)
            name = backup_id(snapshot.taken_at)
            key = dump_key(database, name)
            with _s3_errors(f"s3://{bucket}"):
                if S3Lake(client, bucket).keys(key.rsplit("/", 1)[0] + "/"):
                    raise BackupError(f"s3://{bucket}/{key}: a backup with this id exists")
            argv = [
                str(pg_bin / "pg_dump"),
                "--format=custom",
                f"--snapshot={snapshot.snapshot_id}",
                "--no-password",
                f"--dbname={target}",
            ]
            with progress.step(f"pg_dump to s3://{bucket}/{key}") as step:
                with _s3_errors(f"upload to s3://{bucket}/{key}"):
                    size, sha256 = await asyncio.to_thread(
                        _dump_and_upload, argv, env, client, bucket, key, deadline, step
                    )
                step.update(done=_megabytes(size), unit="MB")
    finally:
        await conn.close()
    with (
        progress.step("verify the upload and write the manifest"),
        _s3_errors(f"s3://{bucket}/{key}"),
    ):
        stored = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        if stored != size:
            raise BackupError(f"s3://{bucket}/{key} holds {stored} bytes, pg_dump wrote {size}")
        manifest = BackupManifest(
            backup_id=name,
            database=database,
            method=DUMP_METHOD,
            server_version=snapshot.server_version,
            dump_tool_version=dump_version,
            snapshot_at=snapshot.taken_at,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            dump=DumpObject(key=key, bytes=size, sha256=sha256),
            migration_version=snapshot.migration_version,
            tables=snapshot.tables,
            audit=snapshot.audit,
        )
        client.put_object(
            Bucket=bucket,
            Key=manifest_key(database, name),
            Body=msgspec.json.format(msgspec.json.encode(manifest)),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    _log.info(
        "backup written",
        extra={"backup_id": name, "bucket": bucket, "bytes": size, "sha256": sha256},
    )
    return manifest


# --- qis restore-drill ----------------------------------------------------------------


@dataclass
class DrillReport:
    """What the drill found; `failures` empty: it passed."""

    backup: BackupManifest | None = None
    bucket: str = ""
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    restored_tables: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, name: str, problems: list[str], ok_text: str) -> None:
        if problems:
            self.failures += [f"{name}: {p}" for p in problems]
            self.lines.append(f"check {name}: FAILED")
            self.lines += [f"  {p}" for p in problems]
        else:
            self.lines.append(f"check {name}: {ok_text}")


def _find_backup(client: Any, bucket: str, database: str, wanted: str | None) -> BackupManifest:
    prefix = database_prefix(database)
    with _s3_errors(f"s3://{bucket}/{prefix}"):
        keys = S3Lake(client, bucket).keys(prefix)
    name = wanted or newest_backup_id(database, keys)
    if name is None:
        raise BackupError(f"no backup of database {database!r} in s3://{bucket}/{prefix}")
    key = manifest_key(database, name)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if is_missing(exc):
            newest = newest_backup_id(database, keys)
            hint = f"the newest is {newest}" if newest else "there is none"
            raise BackupError(
                f"no backup {name} of database {database!r} in s3://{bucket}/{prefix} ({hint})"
            ) from None
        raise BackupError(f"s3://{bucket}/{key}: {exc}") from exc
    except BotoCoreError as exc:
        raise BackupError(f"s3://{bucket}/{key}: {exc}") from exc
    try:
        return msgspec.json.decode(body, type=BackupManifest)
    except msgspec.DecodeError as exc:
        raise BackupError(f"s3://{bucket}/{key} is not a backup manifest: {exc}") from None


async def _lake_problems(settings: Settings, conn: Any, report: DrillReport) -> None:
    """The restored database's archived hours against the lake's manifests."""
    if not await conn.fetchval("SELECT to_regclass('lake_hours') IS NOT NULL"):
        report.lines.append(
            "check lake: no lake_hours table (a schema before 0008), nothing to compare"
        )
        return
    hours = await archived_hours(conn)
    if not hours:
        report.lines.append(
            "check lake: no archived hour in the restored database, nothing to compare"
        )
        return
    horizon = await retained_from(conn)
    store, bucket = S3Lake.from_settings(settings.lake), settings.lake.bucket
    checked, problems, ahead = hours[-LAKE_HOURS:], [], []
    for hour, generation in checked:
        key = lake.manifest_key(hour, generation)
        try:
            manifest = store.manifest(hour, generation)
        except (ClientError, BotoCoreError, msgspec.DecodeError) as exc:
            problems.append(f"s3://{bucket}/{key}: {exc}")
            continue
        for dataset, summary in sorted(manifest.datasets.items()):
            if dataset not in lake.DATASETS or horizon.get(dataset, hour) > hour:
                continue  # retention dropped this hour's rows: the lake serves them
            found = lake_hour_problem(
                dataset, hour, await hour_rows(conn, dataset, hour), summary.rows
            )
            if found.startswith("lost"):
                problems.append(found)
            elif found:
                ahead.append(found)
    report.check(
        "lake",
        problems,
        f"OK, the newest {len(checked)} of {len(hours)} archived hour(s) match their manifests"
        + (f" ({len(ahead)} dataset-hour(s) ahead of the lake)" if ahead else ""),
    )
    report.lines += [f"  {a}" for a in ahead]


async def _check_restored(settings: Settings, dsn: str, report: DrillReport) -> None:
    backup = report.backup
    assert backup is not None
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        problems = await migration_problems(conn, bundled_migrations())
        version = max((m.version for m in bundled_migrations()), default=0)
        report.check("migrations", problems, f"OK, all {version} applied")
        result = await verify_audit_trail(stream_records(conn))
        chain = [] if result.ok else [f"broken at seq {result.broken_seq}: {result.reason}"]
        head = compare_audit_head(backup.audit, await audit_head(conn))
        report.check(
            "audit verify",
            [*chain, *([head] if head else [])],
            f"OK, {result.records} audit record(s), chain intact, ends where the backup's does",
        )
        report.restored_tables = await table_counts(conn)
        rows = sum(report.restored_tables.values())
        report.check(
            "row counts",
            compare_counts(backup.tables, report.restored_tables),
            f"OK, {len(backup.tables)} tables, {rows} rows, equal to the manifest",
        )
        await _lake_problems(settings, conn, report)
    finally:
        await conn.close()


async def run_restore_drill(
    settings: Settings,
    progress: Progress,
    *,
    backup: str | None = None,
    database: str | None = None,
) -> DrillReport:
    """Restore a backup into a fresh cluster and check it; the report says what passed.
    Raises BackupError when there is nothing to restore or a tool fails."""
    deadline = Deadline(settings.backup.timeout_seconds)
    pg_bin = find_pg_bin(settings.backup.pg_bin)
    database = database or database_name(settings.db.writer_dsn)
    client, bucket = s3_client(settings.lake), settings.lake.backup_bucket
    report = DrillReport(bucket=bucket)
    began = time.monotonic()
    with progress.step("find the backup"):
        report.backup = manifest = _find_backup(client, bucket, database, backup)
    report.lines.append(
        f"backup {manifest.backup_id} of {manifest.database}: "
        f"s3://{bucket}/{manifest.dump.key}, {_megabytes(manifest.dump.bytes)} MB, "
        f"{DUMP_METHOD} of PostgreSQL {manifest.server_version}"
    )
    with tempfile.TemporaryDirectory(prefix="qis-restore-drill-dump-") as scratch:
        dump = Path(scratch) / "dump.pgcustom"
        started = time.monotonic()
        with (
            progress.step(f"download s3://{bucket}/{manifest.dump.key}") as step,
            dump.open("wb") as out,
            _s3_errors(f"download of s3://{bucket}/{manifest.dump.key}"),
        ):
            writer = await asyncio.to_thread(
                download_stream,
                client,
                bucket,
                manifest.dump.key,
                out,
                _throughput(step, started),
            )
        report.timings["download"] = time.monotonic() - started
        if (writer.bytes, writer.hexdigest()) != (manifest.dump.bytes, manifest.dump.sha256):
            report.check(
                "sha256",
                [
                    f"s3://{bucket}/{manifest.dump.key} has {writer.bytes} bytes with sha256 "
                    f"{writer.hexdigest()}; the manifest says {manifest.dump.bytes} bytes, "
                    f"sha256 {manifest.dump.sha256}: the object is corrupt, not restored"
                ],
                "",
            )
            report.timings["total"] = time.monotonic() - began
            return report
        report.lines.append(f"check sha256: OK, {manifest.dump.sha256}")
        with contextlib.ExitStack() as cluster_scope:
            started = time.monotonic()
            with progress.step("start a fresh PostgreSQL cluster"):
                cluster = cluster_scope.enter_context(temporary_cluster(pg_bin, deadline))
            report.timings["cluster"] = time.monotonic() - started
            env = cluster.environment()
            started = time.monotonic()
            with progress.step(f"pg_restore into 127.0.0.1:{cluster.port}"):
                await asyncio.to_thread(
                    run_tool,
                    [
                        str(pg_bin / "createdb"),
                        f"--maintenance-db={cluster.url('postgres')}",
                        "--",
                        database,
                    ],
                    "createdb",
                    deadline,
                    env,
                )
                await asyncio.to_thread(
                    run_tool,
                    [
                        str(pg_bin / "pg_restore"),
                        f"--jobs={settings.backup.restore_jobs}",
                        "--no-owner",
                        "--no-privileges",
                        "--exit-on-error",
                        f"--dbname={cluster.url(database)}",
                        str(dump),
                    ],
                    "pg_restore",
                    deadline,
                    env,
                )
            report.timings["restore"] = time.monotonic() - started
            report.lines.append(
                f"restored into a fresh PostgreSQL {cluster.version} cluster on "
                f"127.0.0.1:{cluster.port} with {settings.backup.restore_jobs} job(s)"
            )
            started = time.monotonic()
            with progress.step("check the restored database"):
                await _check_restored(settings, cluster.dsn(database), report)
            report.timings["checks"] = time.monotonic() - started
    report.timings["total"] = time.monotonic() - began
    return report


def _summary(report: DrillReport) -> list[str]:
    manifest = report.backup
    lines = list(report.lines)
    if manifest is not None:
        point = f"recovery point: {manifest.snapshot_at.isoformat()} (the backup's snapshot)"
        if manifest.audit is not None:
            point += (
                f"; newest audit record seq {manifest.audit.seq} at {manifest.audit.at.isoformat()}"
            )
        lines.append(point)
    t = report.timings
    parts = ", ".join(
        f"{k} {t[k]:.1f} s" for k in ("download", "cluster", "restore", "checks") if k in t
    )
    lines.append(f"restore time (RTO achieved): {t.get('total', 0.0):.1f} s ({parts})")
    if report.ok:
        lines.append("OK: the restore drill passed")
    else:
        lines.append(f"FAILED: the restore drill failed {len(report.failures)} check(s):")
        lines += [f"  {f}" for f in report.failures]
    return lines


def cmd_backup(settings: Settings, _: argparse.Namespace) -> int:
    try:
        manifest = asyncio.run(run_backup(settings, Progress("backup", steps=3, stream=sys.stderr)))
    except (BackupError, ToolError, ValueError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"qis backup: {exc}\n")
        return EXIT_FAILED
    bucket = settings.lake.backup_bucket
    seconds = (manifest.finished_at - manifest.started_at).total_seconds()
    rows = sum(manifest.tables.values())
    sys.stdout.write(
        f"backup {manifest.backup_id} of {manifest.database}: s3://{bucket}/{manifest.dump.key}\n"
        f"  {manifest.dump.bytes} bytes, sha256 {manifest.dump.sha256}\n"
        f"  {rows} rows in {len(manifest.tables)} tables, "
        f"migration version {manifest.migration_version}\n"
        f"  recovery point {manifest.snapshot_at.isoformat()}, took {seconds:.1f} s\n"
    )
    return 0


def cmd_restore_drill(settings: Settings, args: argparse.Namespace) -> int:
    progress = Progress("restore-drill", steps=5, stream=sys.stderr)
    try:
        report = asyncio.run(
            run_restore_drill(settings, progress, backup=args.backup, database=args.database)
        )
    except (BackupError, ToolError, ValueError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"qis restore-drill: FAILED: {exc}\n")
        return EXIT_FAILED
    sys.stdout.write("".join(f"{line}\n" for line in _summary(report)))
    _log.info(
        "restore drill",
        extra={
            "ok": report.ok,
            "backup_id": report.backup.backup_id if report.backup else None,
            "failures": report.failures,
            "seconds": {k: round(v, 3) for k, v in report.timings.items()},
        },
    )
    return 0 if report.ok else EXIT_FAILED


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `qis backup` and `qis restore-drill` to `qis`'s sub-parsers."""
    backup = sub.add_parser(
        "backup",
        help="dump the database (pg_dump -Fc) to the backup bucket, with a manifest",
        description=(
            "Dump the database of QIS_DB__WRITER_DSN from one snapshot and stream it to "
            "s3://QIS_LAKE__BACKUP_BUCKET/postgresql/<database>/<id>/, with a manifest "
            "(sha256, row counts, audit head, migration version, recovery point). "
            "Exit 0: written; 1: failed; 2: PostgreSQL unreachable. docs/backup.md."
        ),
    )
    backup.set_defaults(run=cmd_backup)
    drill = sub.add_parser(
        "restore-drill",
        help="restore a backup into a fresh local cluster and check it",
        description=(
            "Download the newest (or --backup ID) backup, check its sha256, restore it into "
            "a temporary PostgreSQL cluster, check migrations, the audit chain, row counts "
            "and the lake's manifests, print the recovery point and the restore time. "
            "Exit 0: every check passed; 1: a check failed or no backup. docs/backup.md."
        ),
    )
    drill.add_argument("--backup", help="backup id (yyyymmddThhmmssZ); default: the newest")
    drill.add_argument(
        "--database", help="whose backups (default: the database of QIS_DB__WRITER_DSN)"
    )
    drill.set_defaults(run=cmd_restore_drill)
