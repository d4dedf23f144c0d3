"""`qis lake ...`: the data lake's commands (docs/lake.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime

from app.settings import Settings


def cmd_buckets(settings: Settings, _: argparse.Namespace) -> int:
    """Create the lake and backup buckets when missing (idempotent, like `kafka topics`)."""
    from app.adapters.s3_lake import LAKE_ERRORS, ensure_buckets
    from app.entrypoints.unreachable import EXIT_UNREACHABLE

    try:
        created = ensure_buckets(settings.lake)
    except LAKE_ERRORS as exc:
        where = settings.lake.endpoint_url or "the AWS endpoint"
        sys.stderr.write(f"qis: cannot reach S3 at {where} ({exc})\n")
        return EXIT_UNREACHABLE
    for bucket in dict.fromkeys((settings.lake.bucket, settings.lake.backup_bucket)):
        sys.stdout.write(f"{bucket}\t{'created' if bucket in created else 'exists'}\n")
    return 0


def parse_hour(text: str) -> datetime:
    """An ISO 8601 time (UTC when it names no offset), as the start of its hour."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def cmd_archive(settings: Settings, args: argparse.Namespace) -> int:
    """Archive closed hours now (those due, or the closed ones of --from/--to with rows)."""
    from app.adapters.postgres.pool import open_pool
    from app.adapters.s3_lake import LAKE_ERRORS
    from app.domain.lake import HOUR, closed_before
    from app.entrypoints.progress import Progress
    from app.entrypoints.scheduler import build_archiver
    from app.entrypoints.unreachable import EXIT_UNREACHABLE, postgres
    from app.services.archive import HourResult

    if args.start is not None and args.end is not None and args.end < args.start:
        sys.stderr.write("qis: --to is before --from\n")
        return 2

    async def main() -> int:
        pool = await postgres(
            open_pool(settings.db.writer_dsn, settings.db), settings.db.writer_dsn
        )
        try:
            archiver = build_archiver(settings.lake, pool)
            progress = Progress("lake archive", steps=1, stream=sys.stderr)
            rows = size = done = 0
            started = time.monotonic()

            def report(result: HourResult) -> None:
                nonlocal rows, size, done
                done += 1
                rows += result.rows if result.state != "unchanged" else 0
                size += result.bytes
                sys.stdout.write(
                    f"{result.hour:%Y-%m-%dT%H:00Z}\tg{result.generation}\t{result.state}"
                    f"\t{result.rows} rows\t{result.bytes} bytes\n"
                )
                elapsed = max(time.monotonic() - started, 1e-9)
                step.update(
                    done,
                    None,
                    unit="hours",
                    rows=rows,
                    bytes=size,
                    rows_per_second=round(rows / elapsed),
                )

            with progress.step("closed hours with rows") as step:
                if args.start is None and args.end is None:
                    # Rounds until one writes nothing new (only unchanged re-checks).
                    while True:
                        results = await archiver.run_round()
                        for result in results:
                            report(result)
                        if all(r.state == "unchanged" for r in results):
                            break
                else:
                    before = closed_before(archiver.clock(), await archiver.settle())
                    if args.end is not None:
                        before = min(before, args.end + HOUR)
                    after = None if args.start is None else args.start - HOUR
                    async for hour in archiver.data_hours(after, before, sys.maxsize):
                        report(await archiver.archive_hour(hour))
            sys.stdout.flush()
            return 0
        except LAKE_ERRORS as exc:
            where = settings.lake.endpoint_url or "the AWS endpoint"
            sys.stderr.write(f"qis: S3 at {where} failed: {exc}\n")
            return EXIT_UNREACHABLE
        finally:
            await pool.close()

    return asyncio.run(main())


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add `lake buckets` and `lake archive` to `qis`; return the `lake` sub-parsers (for
    `lake query`, app/entrypoints/lake_query.py)."""
    lake = sub.add_parser(
        "lake", help="the S3 data lake: buckets, archive, query", description=__doc__
    ).add_subparsers(dest="lake", required=True)
    lake.add_parser("buckets", help="create the lake and backup buckets when missing").set_defaults(
        run=cmd_buckets
    )
    archive = lake.add_parser(
        "archive",
        help="archive closed hours to the lake now",
        description="Archive closed hours to the lake (the scheduler does it every"
        " QIS_LAKE__ARCHIVE_INTERVAL_SECONDS). Without --from/--to: every hour due, every"
        " archived hour with a late correction and every skipped hour with a late row, round"
        " after round until one writes nothing new. With them: the closed hours of the range"
        " that hold rows (hours without rows have nothing to archive), each written as a new"
        " generation only when the database differs from the lake."
        " One line per hour on stdout; progress on stderr (JSON lines when not a terminal)."
        " Exit 2 when PostgreSQL or S3 does not answer.",
    )
    archive.add_argument(
        "--from", dest="start", type=parse_hour, help="first hour (ISO 8601; UTC if no offset)"
    )
    archive.add_argument("--to", dest="end", type=parse_hour, help="last hour, inclusive")
    archive.set_defaults(run=cmd_archive)
    return lake
