"""`qis alarms ...`: deploy, evaluate offline, test (and `generate`, given by the caller).

`register(subparsers, generate=...)` adds the `alarms` group; `dashboards/cli.py` calls it
with its `generate` command, which needs the dashboards' definitions as well.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from alarms.definitions import ALARMS
from alarms.vectors import VectorError
from ops.alarm import MetricAlarm
from ops.cli import (
    EXPECTED_ERRORS,
    Command,
    attach,
    aws_options,
    environment_option,
    metrics_option,
    out,
    parameter_option,
    parameters,
    read_recording,
    repository_root,
)
from ops.naming import base_name, environment_values, prefix_for

ERRORS = (*EXPECTED_ERRORS, VectorError)


def cmd_alarms_deploy(args: argparse.Namespace) -> int:
    """put_metric_alarm every alarm, or with --dry-run print the diff against AWS."""
    from ops import deploy

    client = deploy.cloudwatch_client(args.region, args.endpoint_url)
    actions = (args.alarm_topic_arn,) if args.alarm_topic_arn else ()
    values = {**environment_values(args.environment), **parameters(args.parameter)}
    desired = deploy.desired_alarms(ALARMS, values, actions)
    changes = deploy.plan_alarms(client, desired, prefix=prefix_for(args.environment))
    if not args.dry_run:
        deploy.apply_alarms(client, desired, changes)
    out(deploy.format_plan(changes, args.dry_run))
    return 0


def selected_alarms(names: Sequence[str]) -> list[MetricAlarm]:
    """The alarms called `names` (all of them when empty): a base name (`DeadLetters`) or
    an environment's full name (`qis-staging-DeadLetters`); VectorError names unknown ones."""
    alarms = list(ALARMS)
    if not names:
        return alarms
    wanted = {base_name(name) for name in names}
    unknown = wanted - {base_name(a.alarm_name) for a in alarms}
    if unknown:
        raise VectorError(f"unknown alarm(s): {', '.join(sorted(unknown))}")
    return [a for a in alarms if base_name(a.alarm_name) in wanted]


def cmd_alarms_evaluate(args: argparse.Namespace) -> int:
    """Print each alarm's state per period over a recorded EMF file."""
    from alarms.evaluate import evaluate_recording, recording_environment
    from alarms.report import format_timelines, timelines_json

    recorded = read_recording(args.metrics)
    environment = recording_environment(recorded, args.environment)
    timelines = evaluate_recording(selected_alarms(args.alarm), recorded, environment)
    if args.json:
        sys.stdout.write(timelines_json(timelines, recorded).decode())
    else:
        out(format_timelines(timelines, recorded, changes_only=args.changes_only))
    firing = [t.alarm.alarm_name for t in timelines if t.final_state() == "ALARM"]
    return 1 if args.fail_on_alarm and firing else 0


def cmd_alarms_test(args: argparse.Namespace) -> int:
    """Run promtool-like alarm test vectors; exit 1 if any expectation fails."""
    from alarms.vectors import load_vectors, run_case, vector_alarms

    files = args.files or sorted((repository_root() / "alarms" / "tests").glob("*.yaml"))
    known = vector_alarms(ALARMS)
    passed = failed = 0
    for path in files:
        for case in load_vectors(path).tests:
            result = run_case(case, known)
            if result.failures:
                failed += 1
                out(f"FAIL {path.name}: {case.name}")
                for failure in result.failures:
                    out(f"  {failure}")
            else:
                passed += 1
    out(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], *, generate: Command
) -> None:
    """Add `alarms` (with its sub-commands) to `qis`'s sub-parsers."""
    alarms = subparsers.add_parser(
        "alarms", help="CloudWatch alarms: generate, deploy, evaluate offline, test"
    ).add_subparsers(dest="alarms", required=True)
    generate_parser = alarms.add_parser("generate", help="same as `dashboards generate`")
    generate_parser.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    attach(generate_parser, generate, ERRORS)
    deploy = alarms.add_parser("deploy", help="put_metric_alarm (or --dry-run: diff)")
    aws_options(deploy)
    parameter_option(deploy)
    deploy.add_argument(
        "--alarm-topic-arn",
        help="SNS topic notified on ALARM and OK (foundation.yaml's output AlarmTopicArn)",
    )
    attach(deploy, cmd_alarms_deploy, ERRORS)
    evaluate = alarms.add_parser("evaluate", help="alarm states over a recorded EMF file")
    metrics_option(evaluate)
    environment_option(evaluate)
    evaluate.add_argument("--json", action="store_true", help="JSON instead of tables")
    evaluate.add_argument(
        "--alarm",
        action="append",
        default=[],
        metavar="NAME",
        help="only this alarm (DeadLetters or qis-ENV-DeadLetters)",
    )
    evaluate.add_argument(
        "--changes-only", action="store_true", help="table rows only where the state changes"
    )
    evaluate.add_argument(
        "--fail-on-alarm",
        action="store_true",
        help="exit 1 when an alarm ends in ALARM (for CI); otherwise always 0",
    )
    attach(evaluate, cmd_alarms_evaluate, ERRORS)
    test = alarms.add_parser("test", help="run promtool-like test vectors (alarms/tests)")
    test.add_argument("files", type=Path, nargs="*", metavar="FILE")
    attach(test, cmd_alarms_test, ERRORS)
