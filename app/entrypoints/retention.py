"""`qis lake retention [--dry-run]`: create day partitions ahead and drop the archived,
verified days older than `QIS_RETENTION__DB_DAYS` (docs/runbooks/retention.md).

Progress goes to stderr (a line per step on a terminal, JSON otherwise); one line per
decision goes to stdout. With the lake enabled, every hour of a day is verified against
the lake (the archive's `verify`) just before the day goes. Exit 0 when nothing was
refused or left busy, 1 otherwise, 2 when PostgreSQL or S3 does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from app.settings import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `lake retention` to the `lake` sub-parsers (app/entrypoints/lake.py)."""
    retention = commands.add_parser(
        "retention",
        help="drop day partitions older than QIS_RETENTION__DB_DAYS once archived and verified",
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="list what would be dropped; change nothing"
    )
    retention.add_argument(
        "--days", type=int, default=None, help="retention in days (default QIS_RETENTION__DB_DAYS)"
    )
    retention.set_defaults(run=cmd_lake_retention)


def cmd_lake_retention(settings: Settings, args: argparse.Namespace) -> int:
    from app.adapters.postgres.partitions import PostgresRetentionStore, ensure_partitions
    from app.adapters.postgres.pool import open_pool
    from app.adapters.s3_lake import LAKE_ERRORS
    from app.entrypoints.progress import Progress
    from app.entrypoints.scheduler import build_archiver
    from app.entrypoints.unreachable import EXIT_UNREACHABLE, postgres
    from app.services.retention import Decision, RetentionPolicy, apply_retention

    days = settings.retention.db_days if args.days is None else args.days
    policy = RetentionPolicy(
        days=days,
        lock_timeout_seconds=settings.retention.lock_timeout_seconds,
        lock_attempts=settings.retention.lock_attempts,
    )
    progress = Progress("lake retention", steps=2, stream=sys.stderr)

    async def main() -> int:
        pool = await postgres(
            open_pool(settings.db.writer_dsn, settings.db), settings.db.writer_dsn
        )
        now = datetime.now(UTC)
        decisions: list[Decision] = []
        # Every hour is verified against the lake again before its day goes, as the
        # scheduler's round does (not for --dry-run, which changes nothing).
        archiver = (
            build_archiver(settings.lake, pool)
            if settings.lake.enabled and not args.dry_run
            else None
        )
        try:
            async with pool.acquire() as conn:
                with progress.step("partitions ahead"):
                    if not args.dry_run:
                        created = await ensure_partitions(
                            conn, now.date(), settings.retention.partitions_ahead_days
                        )
                        sys.stdout.write(f"partitions created: {created}\n")
                with progress.step(f"retention of {days} day(s)") as step:

                    def seen(decision: Decision) -> None:
                        decisions.append(decision)
                        step.update(done=len(decisions), unit="partitions", last=decision.partition)
                        rows = "" if decision.rows is None else f" rows={decision.rows}"
                        why = "" if decision.reason is None else f" ({decision.reason})"
                        what = f"{decision.action}: {decision.dataset} {decision.partition}"
                        sys.stdout.write(f"{what}{rows}{why}\n")

                    await apply_retention(
                        PostgresRetentionStore(conn),
                        policy,
                        now,
                        verify=None if archiver is None else archiver.verify,
                        dry_run=args.dry_run,
                        on_decision=seen,
                    )
        except LAKE_ERRORS as exc:
            where = settings.lake.endpoint_url or "the AWS endpoint"
            sys.stderr.write(f"qis: S3 at {where} failed: {exc}\n")
            return EXIT_UNREACHABLE
        finally:
            await pool.close()
        if days <= 0:
            sys.stdout.write("retention is off (QIS_RETENTION__DB_DAYS=0): nothing dropped\n")
        return 1 if any(d.action in ("refused", "busy") for d in decisions) else 0

    return asyncio.run(main())
