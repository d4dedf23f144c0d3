"""`qis dashboards ...` and `qis alarms ...`: generate, deploy, render, evaluate, test.

`register(subparsers)` adds both command groups to `qis`'s argparse sub-parsers. Each
command is `cmd_*(args) -> exit code`; `args.run(settings, args)` (what `qis` calls) is
an adapter that ignores the settings, and `args.ops_command(args)` calls it directly.
Until `qis` registers them, `python -m app.ops dashboards ...` runs the same commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from app.ops.dashboard import UnresolvedPlaceholders
from app.ops.emf import EmfError, RecordedMetrics, read_emf
from app.ops.metric_math import MetricMathError
from app.ops.vectors import VectorError

if TYPE_CHECKING:
    from app.ops.alarm import MetricAlarm
    from app.ops.dashboard import Dashboard

Command = Callable[[argparse.Namespace], int]
_EXPECTED_ERRORS = (
    EmfError,
    VectorError,
    UnresolvedPlaceholders,
    MetricMathError,
    ClientError,
    BotoCoreError,
    OSError,
)


def repository_root() -> Path:
    """The checkout holding `dashboards/`, `alarms/` and `infra/`."""
    import dashboards

    return Path(dashboards.__file__).resolve().parent.parent


def _definitions() -> tuple[Sequence[Dashboard], Sequence[MetricAlarm]]:
    from alarms.definitions import ALARMS
    from dashboards.definitions import DASHBOARDS

    return DASHBOARDS, ALARMS


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _read(paths: Sequence[Path]) -> RecordedMetrics:
    recorded = read_emf(paths)
    if recorded.records == 0:
        raise EmfError(f"no EMF record in {', '.join(map(str, paths))}")
    return recorded


def cmd_generate(args: argparse.Namespace) -> int:
    """Regenerate (or with --check, verify) the committed dashboard, alarm and CFN files."""
    from app.ops.artifacts import generated_files, stale_files, write_files

    root = repository_root()
    files = generated_files(root, *_definitions())
    if args.check:
        stale = stale_files(root, files)
        for path in stale:
            _out(f"stale: {path.relative_to(root)}")
        if stale:
            _out("run `python -m dashboards.generate` and commit the result")
        return 1 if stale else 0
    changed = write_files(root, files)
    for path in changed:
        _out(f"wrote {path.relative_to(root)}")
    _out(f"{len(files)} generated files, {len(changed)} changed")
    return 0


def _parameters(pairs: Sequence[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UnresolvedPlaceholders(f"--parameter expects NAME=VALUE, got {pair!r}")
        values[name] = value
    return values


def cmd_dashboards_deploy(args: argparse.Namespace) -> int:
    """put_dashboard every dashboard, or with --dry-run print the diff against AWS."""
    from app.ops import deploy

    client = deploy.cloudwatch_client(args.region, args.endpoint_url)
    values = {
        "AWS::Region": client.meta.region_name,
        "AWS::AccountId": deploy.account_id(args.region, args.endpoint_url),
        **_parameters(args.parameter),
    }
    desired = deploy.desired_dashboards(_definitions()[0], values)
    changes = deploy.plan_dashboards(client, desired)
    if not args.dry_run:
        for message in deploy.apply_dashboards(client, desired, changes):
            _out(f"validation: {message}")
    _out(deploy.format_plan(changes, args.dry_run))
    return 0


def cmd_alarms_deploy(args: argparse.Namespace) -> int:
    """put_metric_alarm every alarm, or with --dry-run print the diff against AWS."""
    from app.ops import deploy

    client = deploy.cloudwatch_client(args.region, args.endpoint_url)
    actions = (args.alarm_topic_arn,) if args.alarm_topic_arn else ()
    desired = deploy.desired_alarms(_definitions()[1], actions)
    changes = deploy.plan_alarms(client, desired)
    if not args.dry_run:
        deploy.apply_alarms(client, desired, changes)
    _out(deploy.format_plan(changes, args.dry_run))
    return 0


def _selected_alarms(names: Sequence[str]) -> list[MetricAlarm]:
    alarms = list(_definitions()[1])
    if not names:
        return alarms
    unknown = set(names) - {a.alarm_name for a in alarms}
    if unknown:
        raise VectorError(f"unknown alarm(s): {', '.join(sorted(unknown))}")
    return [a for a in alarms if a.alarm_name in names]


def cmd_alarms_evaluate(args: argparse.Namespace) -> int:
    """Print each alarm's state per period over a recorded EMF file."""
    from app.ops.evaluate import evaluate_recording
    from app.ops.report import format_timelines, timelines_json

    recorded = _read(args.metrics)
    timelines = evaluate_recording(_selected_alarms(args.alarm), recorded)
    if args.json:
        sys.stdout.write(timelines_json(timelines, recorded).decode())
    else:
        _out(format_timelines(timelines, recorded, changes_only=args.changes_only))
    firing = [t.alarm.alarm_name for t in timelines if t.final_state() == "ALARM"]
    return 1 if args.fail_on_alarm and firing else 0


def cmd_alarms_test(args: argparse.Namespace) -> int:
    """Run promtool-like alarm test vectors; exit 1 if any expectation fails."""
    from app.ops.vectors import load_vectors, run_case

    files = args.files or sorted((repository_root() / "alarms" / "tests").glob("*.yaml"))
    known = {a.alarm_name: a for a in _definitions()[1]}
    passed = failed = 0
    for path in files:
        for case in load_vectors(path).tests:
            result = run_case(case, known)
            if result.failures:
                failed += 1
                _out(f"FAIL {path.name}: {case.name}")
                for failure in result.failures:
                    _out(f"  {failure}")
            else:
                passed += 1
    _out(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_dashboards_render(args: argparse.Namespace) -> int:
    """Draw every metric widget from a recording as PNGs, plus index.html with alarms."""
    from app.ops.evaluate import evaluate_recording
    from app.ops.render import render_review

    dashboards, alarms = _definitions()
    recorded = _read(args.metrics)
    timelines = evaluate_recording(alarms, recorded)
    rendered = render_review(
        dashboards, timelines, recorded, args.out, [str(p) for p in args.metrics]
    )
    empty = sum(not r.has_data for r in rendered)
    _out(
        f"wrote {len(rendered)} graphs ({empty} without data in the recording), "
        f"alarm-timeline.png and {args.out / 'index.html'}"
    )
    return 0


def _guarded(command: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except _EXPECTED_ERRORS as exc:
            sys.stderr.write(f"qis: {exc}\n")
            return 2

    return run


def _attach(parser: argparse.ArgumentParser, command: Command) -> None:
    guarded = _guarded(command)

    def run(_settings: Any, args: argparse.Namespace) -> int:
        return guarded(args)

    parser.set_defaults(run=run, ops_command=guarded)


def _aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: boto3's configuration)")
    parser.add_argument("--endpoint-url", help="another CloudWatch endpoint, e.g. moto_server")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the diff against what is deployed, only"
    )


def _metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="EMF file (one JSON record per line); repeat for one file per process",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dashboards` and `alarms` (with their sub-commands) to `qis`'s sub-parsers."""
    dashboards = subparsers.add_parser(
        "dashboards", help="CloudWatch dashboards: generate, deploy, render offline"
    ).add_subparsers(dest="dashboards", required=True)
    generate = dashboards.add_parser(
        "generate", help="rewrite dashboards/generated, alarms/generated and the CFN template"
    )
    generate.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    _attach(generate, cmd_generate)
    deploy = dashboards.add_parser("deploy", help="put_dashboard (or --dry-run: diff)")
    _aws_options(deploy)
    deploy.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value of a ${NAME} placeholder, e.g. LoadBalancerFullName=app/qis/0123",
    )
    _attach(deploy, cmd_dashboards_deploy)
    render = dashboards.add_parser("render", help="PNG per graph + index.html from EMF files")
    _metrics_option(render)
    render.add_argument("--out", type=Path, required=True, metavar="DIR")
    _attach(render, cmd_dashboards_render)

    alarms = subparsers.add_parser(
        "alarms", help="CloudWatch alarms: generate, deploy, evaluate offline, test"
    ).add_subparsers(dest="alarms", required=True)
    generate = alarms.add_parser("generate", help="same as `dashboards generate`")
    generate.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    _attach(generate, cmd_generate)
    deploy = alarms.add_parser("deploy", help="put_metric_alarm (or --dry-run: diff)")
    _aws_options(deploy)
    deploy.add_argument("--alarm-topic-arn", help="SNS topic notified on ALARM and OK")
    _attach(deploy, cmd_alarms_deploy)
    evaluate = alarms.add_parser("evaluate", help="alarm states over a recorded EMF file")
    _metrics_option(evaluate)
    evaluate.add_argument("--json", action="store_true", help="JSON instead of tables")
    evaluate.add_argument(
        "--alarm", action="append", default=[], metavar="NAME", help="only this alarm"
    )
    evaluate.add_argument(
        "--changes-only", action="store_true", help="table rows only where the state changes"
    )
    evaluate.add_argument(
        "--fail-on-alarm",
        action="store_true",
        help="exit 1 when an alarm ends in ALARM (for CI); otherwise always 0",
    )
    _attach(evaluate, cmd_alarms_evaluate)
    test = alarms.add_parser("test", help="run promtool-like test vectors (alarms/tests)")
    test.add_argument("files", type=Path, nargs="*", metavar="FILE")
    _attach(test, cmd_alarms_test)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the commands without `qis` (no settings needed)."""
    parser = argparse.ArgumentParser(prog="python -m app.ops", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.ops_command(args)
    return result
