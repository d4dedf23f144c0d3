"""QIS load test: ingestion and query users, load shapes, seeding, SLO gates at the end.

    locust -f loadtests/locustfile.py --host https://staging.example.com \\
        --headless -u 200 -r 20 -t 15m --shape step \\
        --csv results/staging --html results/staging.html --slo-report results/slo.json

Options added here (each also from a `LOADTEST_*` environment variable, never `QIS_*`):
`--shape constant|ramp|step|spike|soak`, `--steps`, `--user-rps`, `--skip-seed`,
`--seed-timeout`, the SLO limits `--slo-ingestion-p95-ms`, `--slo-read-p99-ms`,
`--slo-max-failure-ratio`, `--slo-report FILE`, and the workload (`--series`,
`--sources`, `--snap-seconds`, `--seed-snaps`, `--outlier-share`, `--late-share`,
`--missing-share`, `--zipf-s`, `--batch-size`, `--prefix`, `--seed`). Auth headers:
`loadtests/auth.py`. docs/performance.md has the whole story.

At the end of the run the SLO gate prints its table after Locust's own and sets the
process exit code: 0 when every SLO holds, 1 otherwise (this replaces Locust's "any
failed request exits 1": a failure ratio under the limit passes).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run from any directory
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from locust import LoadTestShape, events
from locust.runners import WorkerRunner

from loadtests import slo
from loadtests.context import LoadContext, current, install
from loadtests.seed import SeedError, add_workload_arguments, discover, seed, workload_from
from loadtests.shapes import KINDS, ShapeSpec, profile, spec_from_options
from loadtests.users import (
    BatchObservationUser,
    HistoryReader,
    OfficialValueReader,
    QualityReader,
    SingleObservationUser,
)

__all__ = [
    "BatchObservationUser",
    "HistoryReader",
    "OfficialValueReader",
    "QisShape",
    "QualityReader",
    "SingleObservationUser",
]

_log = logging.getLogger("loadtests")


class QisShape(LoadTestShape):
    """The shape named by `--shape` (loadtests/shapes.py); `-u`, `-r` and `-t` keep their
    meaning (peak users, spawn rate, duration), so the common options are not ignored."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._spec: ShapeSpec | None = None

    def tick(self) -> tuple[int, float] | None:
        if self._spec is None:
            options = self.runner.environment.parsed_options if self.runner else None
            self._spec = spec_from_options(options)
        return profile(self._spec, self.get_run_time())


_outcome: dict[str, Any] = {}


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    group = parser.add_argument_group("QIS load test")
    group.add_argument(
        "--shape",
        choices=KINDS,
        default="constant",
        env_var="LOADTEST_SHAPE",
        help="load shape; -u is the peak, -t the duration (default: constant)",
    )
    group.add_argument(
        "--steps", type=int, default=5, env_var="LOADTEST_STEPS", help="steps of the step shape"
    )
    group.add_argument(
        "--user-rps",
        type=float,
        default=2.0,
        env_var="LOADTEST_USER_RPS",
        help="requests per second of each simulated user",
    )
    group.add_argument(
        "--skip-seed",
        action="store_true",
        env_var="LOADTEST_SKIP_SEED",
        help="do not create data; find what an earlier seed created",
    )
    group.add_argument(
        "--seed-timeout",
        type=float,
        default=120.0,
        env_var="LOADTEST_SEED_TIMEOUT",
        help="bound of the seed step (s)",
    )
    group.add_argument(
        "--slo-ingestion-p95-ms",
        type=float,
        default=slo.SloConfig.ingestion_p95_ms,
        env_var="LOADTEST_SLO_INGESTION_P95_MS",
    )
    group.add_argument(
        "--slo-read-p99-ms",
        type=float,
        default=slo.SloConfig.read_p99_ms,
        env_var="LOADTEST_SLO_READ_P99_MS",
    )
    group.add_argument(
        "--slo-max-failure-ratio",
        type=float,
        default=slo.SloConfig.max_failure_ratio,
        env_var="LOADTEST_SLO_MAX_FAILURE_RATIO",
    )
    group.add_argument(
        "--slo-min-requests",
        type=int,
        default=slo.SloConfig.min_requests,
        env_var="LOADTEST_SLO_MIN_REQUESTS",
        help="endpoints with fewer requests are shown but not gated",
    )
    group.add_argument(
        "--slo-report",
        default="",
        env_var="LOADTEST_SLO_REPORT",
        help="write the SLO results and endpoint table as JSON here",
    )
    add_workload_arguments(group, env_prefix="LOADTEST_")


@events.init.add_listener
def _context(environment: Any, runner: Any = None, **_: Any) -> None:
    """Set up the shared state; seed (or find) the readable data before anything starts.

    Seeding here, not in `test_start`, keeps it out of the measured time: the init hook
    runs before the run-time clock and the shape's clock start (Locust fires `test_start`
    from the spawning greenlet, concurrently with both). An exception here makes Locust
    exit 1 before any load is sent.
    """
    options = environment.parsed_options
    context = LoadContext(workload_from(options), environment.host or "", options.user_rps)
    install(context)
    if isinstance(runner, WorkerRunner) or not context.host:
        return  # workers discover on first use; without --host, the web UI start seeds
    _prepare(context, options)


@events.test_start.add_listener
def _late_seed(environment: Any, **_: Any) -> None:
    """A web UI run whose host was only given in the UI: seed when the test starts."""
    if isinstance(environment.runner, WorkerRunner):
        return
    context = current()
    if context.seeded is None:
        context.host = environment.host or context.host
        _prepare(context, environment.parsed_options)


def _prepare(context: LoadContext, options: Any) -> None:
    try:
        if options.skip_seed:
            context.seeded = discover(context.host, context.workload, headers=context.headers)
            _log.info("seeded snaps found: %s", [s.isoformat() for s in context.seeded.snaps])
        else:
            context.seeded = seed(
                context.host,
                context.workload,
                headers=context.headers,
                timeout=options.seed_timeout,
                log=_log.info,
            )
    except (SeedError, OSError) as exc:
        _log.error("seed failed: %s", exc)
        raise


@events.quitting.add_listener
def _gate(environment: Any, **_: Any) -> None:
    """Evaluate the SLOs on the final statistics and decide the exit code."""
    if isinstance(environment.runner, WorkerRunner) or environment.runner is None:
        return
    options = environment.parsed_options
    config = slo.SloConfig(
        ingestion_p95_ms=options.slo_ingestion_p95_ms,
        read_p99_ms=options.slo_read_p99_ms,
        max_failure_ratio=options.slo_max_failure_ratio,
        min_requests=options.slo_min_requests,
    )
    rows = slo.from_locust(environment.runner.stats)
    errors = sum(int(e.get("count", 0)) for e in environment.runner.exceptions.values())
    results = slo.evaluate(rows, config, errors)
    environment.process_exit_code = slo.exit_code(results)
    _outcome.update(rows=rows, results=results)
    if options.slo_report:
        path = Path(options.slo_report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(slo.report_json(rows, results), indent=1))


@events.quit.add_listener
def _print_gate(**_: Any) -> None:
    """Print after Locust's own tables, so the gate is the last thing on screen."""
    if "results" not in _outcome:
        return
    print()
    print(slo.format_endpoints(_outcome["rows"]))
    print()
    print(slo.format_results(_outcome["results"]))
