"""What the `qis dashboards ...` and `qis alarms ...` commands share: error handling,
options, reading recordings, and regenerating the committed files.

The commands themselves live with their definitions: `dashboards/cli.py` (which also
registers the `alarms` group, because generating needs both sets of definitions) and
`alarms/cli.py`. This module knows no definitions, so `ops` never imports them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.alarm import MetricAlarm
from ops.dashboard import Dashboard, UnresolvedPlaceholders
from ops.emf import EmfError, RecordedMetrics, read_emf
from ops.metric_math import MetricMathError
from ops.naming import DEFAULT_RUNBOOK_BASE_URL, LOCAL, MAX_ENVIRONMENT_LENGTH

Command = Callable[[argparse.Namespace], int]
EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    EmfError,
    UnresolvedPlaceholders,
    MetricMathError,
    ClientError,
    BotoCoreError,
    OSError,
)


def repository_root() -> Path:
    """The checkout holding `ops/`, `dashboards/`, `alarms/` and `infra/`."""
    return Path(__file__).resolve().parent.parent


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def read_recording(paths: Sequence[Path]) -> RecordedMetrics:
    """The EMF records in `paths`; EmfError when there is none."""
    recorded = read_emf(paths)
    if recorded.records == 0:
        raise EmfError(f"no EMF record in {', '.join(map(str, paths))}")
    return recorded


def generate(dashboards: Sequence[Dashboard], alarms: Sequence[MetricAlarm], check: bool) -> int:
    """Regenerate (or with `check`, verify) the committed dashboard, alarm and CFN files."""
    from ops.artifacts import generated_files, stale_files, write_files

    root = repository_root()
    files = generated_files(root, dashboards, alarms)
    if check:
        stale = stale_files(root, files)
        for path in stale:
            out(f"stale: {path.relative_to(root)}")
        if stale:
            out("run `python -m dashboards.generate` and commit the result")
        return 1 if stale else 0
    changed = write_files(root, files)
    for path in changed:
        out(f"wrote {path.relative_to(root)}")
    out(f"{len(files)} generated files, {len(changed)} changed")
    return 0


def parameters(pairs: Sequence[str]) -> dict[str, str]:
    """`NAME=VALUE` pairs as a dict."""
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UnresolvedPlaceholders(f"--parameter expects NAME=VALUE, got {pair!r}")
        values[name] = value
    return values


def guarded(command: Command, errors: tuple[type[Exception], ...] = EXPECTED_ERRORS) -> Command:
    """`command`, with an expected error printed as one line on stderr and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except errors as exc:
            sys.stderr.write(f"qis: {exc}\n")
            return 2

    return run


def attach(
    parser: argparse.ArgumentParser,
    command: Command,
    errors: tuple[type[Exception], ...] = EXPECTED_ERRORS,
) -> None:
    """Make `command` what `parser` runs: `args.run(settings, args)` (what `qis` calls;
    the settings are not needed) and `args.ops_command(args)`."""
    safe = guarded(command, errors)

    def run(_settings: Any, args: argparse.Namespace) -> int:
        return safe(args)

    parser.set_defaults(run=run, ops_command=safe)


def aws_options(parser: argparse.ArgumentParser) -> None:
    """--environment (required), --region, --endpoint-url, --dry-run."""
    parser.add_argument(
        "--environment",
        required=True,
        type=environment_name,
        help="the environment deployed: names qis-ENV-*, metrics with Environment=ENV",
    )
    parser.add_argument("--region", help="AWS region (default: boto3's configuration)")
    parser.add_argument("--endpoint-url", help="another CloudWatch endpoint, e.g. moto_server")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the diff against what is deployed, only"
    )


def environment_name(text: str) -> str:
    """An environment name as the stacks take it: lower-case letters and digits."""
    if not re.fullmatch(rf"[a-z][a-z0-9]{{0,{MAX_ENVIRONMENT_LENGTH - 1}}}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: lower-case letters and digits, e.g. staging")
    return text


def environment_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--environment",
        type=environment_name,
        help="evaluate the alarms of this environment (its Environment dimension); default: "
        f"the one the recording holds, else {LOCAL}",
    )


def parameter_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value of a ${NAME} placeholder, e.g. LoadBalancerFullName=app/qis-staging/0123 "
        f"(RunbookBaseUrl defaults to {DEFAULT_RUNBOOK_BASE_URL})",
    )


def metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="EMF file (one JSON record per line); repeat for one file per process",
    )
