"""`qis dashboards ...` and `qis alarms ...`: generate, deploy, render, evaluate, test.

`register(subparsers)` adds both command groups to `qis`'s argparse sub-parsers: the
dashboards draw the alarms' thresholds and the generated CloudFormation template holds
both, so this module (which may import `alarms`; `alarms` never imports `dashboards`)
is where the two meet. Each command is `cmd_*(args) -> exit code`; `args.run(settings,
args)` (what `qis` calls) ignores the settings, and `args.ops_command(args)` calls it
directly. `python -m dashboards.cli dashboards ...` runs the same commands without `qis`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from alarms import cli as alarms_cli
from alarms.definitions import ALARMS
from dashboards.definitions import DASHBOARDS
from ops.cli import (
    attach,
    aws_options,
    environment_option,
    generate,
    metrics_option,
    out,
    parameter_option,
    parameters,
    read_recording,
)
from ops.naming import environment_values, prefix_for, resolve


def cmd_generate(args: argparse.Namespace) -> int:
    """Regenerate (or with --check, verify) the committed dashboard, alarm and CFN files."""
    return generate(DASHBOARDS, ALARMS, args.check)


def cmd_dashboards_deploy(args: argparse.Namespace) -> int:
    """put_dashboard every dashboard, or with --dry-run print the diff against AWS."""
    from ops import deploy

    client = deploy.cloudwatch_client(args.region, args.endpoint_url)
    values = {
        "AWS::Region": client.meta.region_name,
        "AWS::AccountId": deploy.account_id(args.region, args.endpoint_url),
        **environment_values(args.environment),
        **parameters(args.parameter),
    }
    desired = deploy.desired_dashboards(DASHBOARDS, values)
    changes = deploy.plan_dashboards(client, desired, prefix=prefix_for(args.environment))
    if not args.dry_run:
        for message in deploy.apply_dashboards(client, desired, changes):
            out(f"validation: {message}")
    out(deploy.format_plan(changes, args.dry_run))
    return 0


def cmd_dashboards_render(args: argparse.Namespace) -> int:
    """Draw every metric widget from a recording as PNGs, plus index.html with alarms."""
    from alarms.evaluate import evaluate_recording, recording_environment
    from dashboards.render import render_review

    recorded = read_recording(args.metrics)
    environment = recording_environment(recorded, args.environment)
    timelines = evaluate_recording(ALARMS, recorded, environment)
    dashboards = [resolve(d, environment_values(environment)) for d in DASHBOARDS]
    rendered = render_review(
        dashboards, timelines, recorded, args.out, [str(p) for p in args.metrics]
    )
    empty = sum(not r.has_data for r in rendered)
    out(
        f"wrote {len(rendered)} graphs ({empty} without data in the recording), "
        f"alarm-timeline.png and {args.out / 'index.html'}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dashboards` and `alarms` (with their sub-commands) to `qis`'s sub-parsers."""
    dashboards = subparsers.add_parser(
        "dashboards", help="CloudWatch dashboards: generate, deploy, render offline"
    ).add_subparsers(dest="dashboards", required=True)
    generate_parser = dashboards.add_parser(
        "generate", help="rewrite dashboards/generated, alarms/generated and the CFN template"
    )
    generate_parser.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    attach(generate_parser, cmd_generate)
    deploy = dashboards.add_parser("deploy", help="put_dashboard (or --dry-run: diff)")
    aws_options(deploy)
    parameter_option(deploy)
    attach(deploy, cmd_dashboards_deploy)
    render = dashboards.add_parser("render", help="PNG per graph + index.html from EMF files")
    metrics_option(render)
    environment_option(render)
    render.add_argument("--out", type=Path, required=True, metavar="DIR")
    attach(render, cmd_dashboards_render)
    alarms_cli.register(subparsers, generate=cmd_generate)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the commands without `qis` (no settings needed)."""
    parser = argparse.ArgumentParser(prog="python -m dashboards.cli", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.ops_command(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
