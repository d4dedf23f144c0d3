"""`qis timestream ...`: the Amazon Timestream database and tables (docs/timeseries.md)."""

from __future__ import annotations

import argparse
import sys

from app.settings import Settings


def cmd_setup(settings: Settings, _: argparse.Namespace) -> int:
    """Create the rejected-records bucket, the database and its two tables when missing,
    with the retention of the settings (idempotent, like `lake buckets`). In AWS the
    deployment's CloudFormation creates them (infra/cloudformation/data.yaml)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from app.adapters.timestream import ensure_timeseries
    from app.entrypoints.unreachable import EXIT_UNREACHABLE

    try:
        states = ensure_timeseries(settings.timestream)
    except (BotoCoreError, ClientError) as exc:
        where = settings.timestream.endpoint_url or "the AWS endpoint"
        sys.stderr.write(f"qis: cannot set up Timestream at {where} ({exc})\n")
        return EXIT_UNREACHABLE
    for resource, state in states:
        sys.stdout.write(f"{resource}\t{state}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `timestream setup` to `qis`."""
    timestream = sub.add_parser(
        "timestream", help="Amazon Timestream: database and tables", description=__doc__
    ).add_subparsers(dest="timestream", required=True)
    timestream.add_parser(
        "setup",
        help="create the database, tables and rejected-records bucket when missing",
        description=cmd_setup.__doc__,
    ).set_defaults(run=cmd_setup)
