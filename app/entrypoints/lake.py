"""`qis lake ...`: the data lake's commands (docs/lake.md)."""

from __future__ import annotations

import argparse
import sys

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


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add `lake buckets` and `lake archive` to `qis`; return the `lake` sub-parsers."""
    lake = sub.add_parser(
        "lake", help="the S3 data lake: buckets, archive", description=__doc__
    ).add_subparsers(dest="lake", required=True)
    lake.add_parser("buckets", help="create the lake and backup buckets when missing").set_defaults(
        run=cmd_buckets
    )
    return lake
