"""Benchmark regression gate: base and head measured in the same job, interleaved.

    .venv/bin/python -m benchmarks.gate [--base REV] [--threshold 0.25] [--rounds 3]

Why this shape: on a shared, noisy CI machine two pytest-benchmark runs taken at different
times differ by more than the regressions we want to catch, so comparing against a stored
result is noise. Instead the gate exports the base revision into a temporary directory
(`git archive`, which leaves the repository untouched: no worktree metadata, nothing to
clean up on a crash) and runs the micro suite alternately in base and head, A B B A A B
..., with the head's Python environment for both. Slow phases of the machine then hit
both sides alike.

- Timing is the benchmark process' CPU time (`--timer`), not wall-clock time: CPU taken
  by other processes of a shared machine does not count. Some machines update the CPU
  clock only in coarse steps (a CI run once measured a fastest round of 0 s with it), so
  `--timer auto`, the default, first measures the step of `time.process_time` and uses
  it only when the step is at most 5 us; otherwise wall-clock `time.perf_counter`.
- A benchmark whose fastest round still reads 0 s on either side (a clock too coarse for
  it) is compared on the fastest per-run mean instead, and says so in the table.
- Per benchmark: the fastest round on each side, over all its runs (pytest-benchmark's
  `min`, then the minimum across runs), and the ratio head / base. Noise on a shared
  machine only ever adds time (cache and core contention, frequency drops, even in CPU
  time), so the minimum is the estimate it disturbs least. A CI run once failed an
  unchanged function at 1.56 x with medians; under a bursty CPU and cache hog locally,
  medians of unchanged code ranged 0.63-1.11 x.
- Confirmation: when a group is over the limit after `--rounds`, the gate runs
  `--confirm-rounds` more interleaved rounds and decides on all of them. A burst of noise
  goes away; a real slowdown stays.
- Per group: the geometric mean of its benchmarks' ratios (the typical slowdown of that
  hot path; a group's parametrised variants are one path). `--aggregate max` makes the
  worst benchmark decide instead.
- The gate fails (exit 1) when any group's ratio exceeds 1 + threshold (default 1.25), or
  when the head's suite itself fails. Benchmarks or groups the base lacks are reported
  and skipped: there is nothing to compare them with.
- Reports: the table on stdout; the same as Markdown (`--markdown`, default
  `.local/bench-gate/gate.md`, also appended to `$GITHUB_STEP_SUMMARY` when that is set,
  for a pull-request comment or a CI step summary) and as JSON (`--json`, default
  `.local/bench-gate/gate.json`): per group its base and head figures (geometric means of
  its benchmarks' fastest rounds), ratio and verdict, then its benchmarks.
- Base, unless given: the commit in `benchmarks/BASELINE` (slowdowns up to it were
  accepted when it moved) when it is newer than the merge base of HEAD and origin/main;
  else that merge base when it differs from HEAD; else the `BASELINE` commit; else
  HEAD~1. The last lines repeat the base and name the groups over the limit.
- Head: the working tree of `--repo` as it is (in CI, the checked-out commit), or
  `--head REV` exported like the base.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

Aggregate = Literal["geomean", "max"]
DEFAULT_SUITE = "benchmarks/micro"
BASELINE_FILE = "benchmarks/BASELINE"


# -- comparison (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmark on both sides, in seconds: its fastest round over all runs, or, when
    that reads 0 s on a side (`statistic == "mean"`), its fastest per-run mean."""

    name: str
    group: str
    base: float | None
    head: float | None
    statistic: Literal["min", "mean"] = "min"

    @property
    def ratio(self) -> float | None:
        if self.base is None or self.head is None or self.base <= 0 or self.head <= 0:
            return None
        return self.head / self.base


@dataclass(frozen=True)
class GroupResult:
    """A group's ratio (head / base) and verdict; `ratio` None when it cannot be compared."""

    group: str
    ratio: float | None
    benchmarks: tuple[BenchmarkResult, ...]
    failed: bool
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    groups: tuple[GroupResult, ...]
    threshold: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        return any(g.failed for g in self.groups)


class RunStat(NamedTuple):
    group: str
    min: float  # fastest round, seconds
    mean: float  # mean round, seconds


Stats = dict[str, RunStat]


def per_run_stats(report: dict[str, Any]) -> Stats:
    """`fullname -> RunStat` of one pytest-benchmark JSON report."""
    out: Stats = {}
    for bench in report.get("benchmarks", []):
        stats = bench["stats"]
        out[bench["fullname"]] = RunStat(
            bench.get("group") or "(none)",
            float(stats["min"]),
            float(stats.get("mean", stats["min"])),
        )
    return out


def _fastest(runs: Sequence[Stats], name: str, statistic: Literal["min", "mean"]) -> float | None:
    values = [getattr(run[name], statistic) for run in runs if name in run]
    return float(min(values)) if values else None


def _result(
    name: str, group: str, base_runs: Sequence[Stats], head_runs: Sequence[Stats]
) -> BenchmarkResult:
    base, head = _fastest(base_runs, name, "min"), _fastest(head_runs, name, "min")
    if (base is not None and base <= 0) or (head is not None and head <= 0):
        # The clock did not advance during a round: its minimum is quantisation, not
        # speed. The mean over many rounds still is a measurement.
        return BenchmarkResult(
            name,
            group,
            _fastest(base_runs, name, "mean"),
            _fastest(head_runs, name, "mean"),
            "mean",
        )
    return BenchmarkResult(name, group, base, head)


def compare(
    base_reports: Sequence[dict[str, Any]],
    head_reports: Sequence[dict[str, Any]],
    threshold: float = 0.25,
    aggregate: Aggregate = "geomean",
) -> Comparison:
    """Fastest round per benchmark and side, a ratio per group, a verdict per group."""
    base_runs = [per_run_stats(r) for r in base_reports]
    head_runs = [per_run_stats(r) for r in head_reports]
    groups: dict[str, list[BenchmarkResult]] = {}
    for name in sorted({n for run in head_runs for n in run}):
        group = next(run[name][0] for run in head_runs if name in run)
        groups.setdefault(group, []).append(_result(name, group, base_runs, head_runs))
    notes: list[str] = []
    removed = sorted({n for run in base_runs for n in run} - {n for run in head_runs for n in run})
    if removed:
        notes.append(f"{len(removed)} benchmark(s) only in the base: {', '.join(removed)}")
    results: list[GroupResult] = []
    for group, benches in sorted(groups.items()):
        ratios = [b.ratio for b in benches if b.ratio is not None]
        new = sum(1 for b in benches if b.base is None)
        unmeasurable = len(benches) - len(ratios) - new
        if not ratios:
            # Nothing compared: skipped when the base lacks it all; a clock that never
            # advanced means the gate cannot vouch for the group, so it fails.
            failed = unmeasurable > 0
            note = "read 0 s: not measurable" if failed else "not in the base: skipped"
            results.append(GroupResult(group, None, tuple(benches), failed, note))
            continue
        if aggregate == "max":
            ratio = max(ratios)
        else:
            ratio = math.exp(statistics.fmean(math.log(r) for r in ratios))
        notes_of_group = [f"{new} new benchmark(s) not compared"] if new else []
        if unmeasurable:
            notes_of_group.append(f"{unmeasurable} read 0 s even on means: not compared")
        by_mean = sum(1 for b in benches if b.statistic == "mean")
        if by_mean:
            notes_of_group.append(f"{by_mean} compared on means (0 s fastest round)")
        note = "; ".join(notes_of_group)
        results.append(GroupResult(group, ratio, tuple(benches), ratio > 1 + threshold, note))
    return Comparison(tuple(results), threshold, tuple(notes))


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_table(comparison: Comparison) -> str:
    """Per group: verdict and ratio, then its benchmarks with both minimums."""
    limit = 1 + comparison.threshold
    lines = [
        f"{'group / benchmark':62} {'base':>10} {'head':>10} {'ratio':>7}  verdict",
        "-" * 100,
    ]
    for g in comparison.groups:
        verdict = "SKIP" if g.ratio is None else "FAIL" if g.failed else "pass"
        ratio = "-" if g.ratio is None else f"{g.ratio:.2f}"
        lines.append(f"{g.group:62} {'':>10} {'':>10} {ratio:>7}  {verdict} {g.note}".rstrip())
        for b in g.benchmarks:
            short = b.name.rsplit("::", 1)[-1]
            r = "-" if b.ratio is None else f"{b.ratio:.2f}"
            mean = "  (means)" if b.statistic == "mean" else ""
            lines.append(f"  {short:60} {_time(b.base):>10} {_time(b.head):>10} {r:>7}{mean}")
    lines.append("-" * 100)
    lines.extend(f"note: {n}" for n in comparison.notes)
    worst = max((g.ratio for g in comparison.groups if g.ratio is not None), default=None)
    summary = "FAILED" if comparison.failed else "passed"
    worst_text = "n/a" if worst is None else f"{worst:.2f}"
    over = [f"{g.group} {g.ratio:.2f}" for g in comparison.groups if g.failed and g.ratio]
    failing = f" (over the limit: {', '.join(over)})" if over else ""
    lines.append(
        f"gate {summary}: limit {limit:.2f} x base per group, worst group {worst_text}{failing}"
    )
    return "\n".join(lines)


def group_times(group: GroupResult) -> tuple[float | None, float | None]:
    """A group's base and head figures: the geometric means of the times of its compared
    benchmarks (their quotient is the group's ratio under the default geomean aggregate)."""
    pairs = [
        (b.base, b.head)
        for b in group.benchmarks
        if b.base is not None and b.head is not None and b.ratio is not None
    ]
    if not pairs:
        return None, None

    def geomean(values: list[float]) -> float:
        return math.exp(statistics.fmean(math.log(v) for v in values))

    return geomean([base for base, _ in pairs]), geomean([head for _, head in pairs])


def _verdict(group: GroupResult) -> str:
    return "SKIP" if group.ratio is None else "FAIL" if group.failed else "pass"


@dataclass(frozen=True)
class GateRun:
    """What the gate compared and how: the context its reports print next to the table."""

    base: str
    base_reason: str
    head: str
    timer: str
    rounds: int
    errors: tuple[str, ...] = ()


def _cell(text: str) -> str:
    """`text` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(comparison: Comparison | None, run: GateRun) -> str:
    """The result as GitHub-flavoured Markdown: a verdict line, a table per group (base,
    head, ratio, verdict) and the benchmarks of each group in a collapsed section. For a
    pull-request comment or `$GITHUB_STEP_SUMMARY`."""
    failed = comparison is None or comparison.failed or bool(run.errors)
    icon = ":x:" if failed else ":white_check_mark:"
    lines = [f"### Benchmark gate: {'FAILED' if failed else 'passed'} {icon}", ""]
    limit = "" if comparison is None else f"; limit {1 + comparison.threshold:.2f} x base per group"
    lines.append(
        f"Base `{run.base[:12]}` ({run.base_reason}), head {run.head}; {run.rounds} "
        f"interleaved round(s); timer `{run.timer}`{limit}."
    )
    lines.append("")
    for error in run.errors:
        lines.append(f"- **error:** {_cell(error)}")
    if comparison is None:
        lines.append("- **error:** the head produced no benchmark results")
        return "\n".join(lines) + "\n"
    if run.errors:
        lines.append("")
    lines += [
        "| group | base | head | ratio | verdict | note |",
        "|---|---:|---:|---:|---|---|",
    ]
    for g in comparison.groups:
        base, head = group_times(g)
        ratio = "-" if g.ratio is None else f"{g.ratio:.2f}"
        verdict = f"**{_verdict(g)}**" if g.failed else _verdict(g)
        lines.append(
            f"| {_cell(g.group)} | {_time(base)} | {_time(head)} | {ratio} | {verdict} "
            f"| {_cell(g.note)} |"
        )
    lines += ["", "<details><summary>Benchmarks (fastest round per side)</summary>", ""]
    lines += ["| group | benchmark | base | head | ratio |", "|---|---|---:|---:|---:|"]
    for g in comparison.groups:
        for b in g.benchmarks:
            short = b.name.rsplit("::", 1)[-1]
            ratio = "-" if b.ratio is None else f"{b.ratio:.2f}"
            means = " (means)" if b.statistic == "mean" else ""
            lines.append(
                f"| {_cell(g.group)} | `{_cell(short)}`{means} | {_time(b.base)} "
                f"| {_time(b.head)} | {ratio} |"
            )
    lines += ["", "</details>"]
    if comparison.notes:
        lines.append("")
        lines += [f"- note: {_cell(n)}" for n in comparison.notes]
    return "\n".join(lines) + "\n"


def as_json(comparison: Comparison | None, run: GateRun) -> dict[str, Any]:
    """The result as JSON-ready builtins: the verdict, then per group its base and head
    figures (seconds), ratio, verdict and benchmarks."""
    groups: list[dict[str, Any]] = []
    for g in comparison.groups if comparison is not None else ():
        base, head = group_times(g)
        groups.append(
            {
                "group": g.group,
                "base_s": base,
                "head_s": head,
                "ratio": g.ratio,
                "verdict": _verdict(g).lower(),
                "failed": g.failed,
                "note": g.note,
                "benchmarks": [
                    {
                        "name": b.name,
                        "base_s": b.base,
                        "head_s": b.head,
                        "ratio": b.ratio,
                        "statistic": b.statistic,
                    }
                    for b in g.benchmarks
                ],
            }
        )
    failed = comparison is None or comparison.failed or bool(run.errors)
    errors = list(run.errors)
    if comparison is None:
        errors.append("the head produced no benchmark results")
    return {
        "verdict": "fail" if failed else "pass",
        "failed": failed,
        "base": run.base,
        "base_reason": run.base_reason,
        "head": run.head,
        "timer": run.timer,
        "rounds": run.rounds,
        "threshold": None if comparison is None else comparison.threshold,
        "errors": errors,
        "notes": [] if comparison is None else list(comparison.notes),
        "groups": groups,
    }


DEFAULT_OUTPUT_DIR = Path(".local/bench-gate")
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def write_reports(
    comparison: Comparison | None,
    run: GateRun,
    markdown: Path,
    json_path: Path,
    environ: dict[str, str] | None = None,
) -> None:
    """Markdown and JSON to their files, and the Markdown appended to the CI step summary
    when `GITHUB_STEP_SUMMARY` names one."""
    text = format_markdown(comparison, run)
    for path, content in (
        (markdown, text),
        (json_path, json.dumps(as_json(comparison, run), indent=1) + "\n"),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    summary = (os.environ if environ is None else environ).get(STEP_SUMMARY_ENV)
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(text)
    print(f"gate: wrote {markdown} and {json_path}")


# -- running (git + pytest) -------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit(repo: Path, rev: str) -> str | None:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        return None


def _is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    done = subprocess.run(
        ["git", "-C", str(repo), "merge-base", "--is-ancestor", ancestor, descendant],
        capture_output=True,
    )
    return done.returncode == 0


def resolve_base(repo: Path, explicit: str | None) -> tuple[str, str]:
    """The base commit and why it was chosen."""
    if explicit:
        commit = _commit(repo, explicit)
        if commit is None:
            raise SystemExit(f"gate: base {explicit!r} is not a commit")
        return commit, f"--base {explicit}"
    head = _commit(repo, "HEAD")
    merge_base: str | None = None
    upstream = _commit(repo, "origin/main")
    if upstream is not None:
        merge_base = _git(repo, "merge-base", "HEAD", upstream)
        if merge_base == head:
            merge_base = None
    baseline: str | None = None
    baseline_file = repo / BASELINE_FILE
    if baseline_file.is_file():
        text = baseline_file.read_text().split("#", 1)[0].strip()
        baseline = _commit(repo, text) if text else None
        if baseline == head:
            baseline = None
    if merge_base is not None and baseline is not None and _is_ancestor(repo, merge_base, baseline):
        # The committed baseline is newer than the branch point: slowdowns between the two
        # were accepted when it moved there, so they are not this change's regressions.
        return baseline, f"committed baseline ({BASELINE_FILE}), newer than the merge base"
    if merge_base is not None:
        return merge_base, "merge base of HEAD and origin/main"
    if baseline is not None:
        return baseline, f"committed baseline ({BASELINE_FILE})"
    parent = _commit(repo, "HEAD~1")
    if parent is None:
        raise SystemExit("gate: no base: no origin/main, no benchmarks/BASELINE, no HEAD~1")
    return parent, "HEAD~1"


def export_tree(repo: Path, rev: str, dest: Path) -> None:
    """The files of `rev` in `dest`, without touching the repository's state."""
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", rev],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryFile() as tar_file:
        tar_file.write(archive)
        tar_file.seek(0)
        with tarfile.open(fileobj=tar_file) as tar:
            tar.extractall(dest, filter="data")


CPU_CLOCK_STEP_LIMIT = 5e-6


def clock_step(clock: Callable[[], float], spin: float = 0.05) -> float:
    """The median step by which `clock` advances while this process is busy for `spin`
    wall-clock seconds (inf when it never advances)."""
    steps: list[float] = []
    end = time.perf_counter() + spin
    previous = clock()
    while time.perf_counter() < end:
        now = clock()
        if now != previous:
            steps.append(now - previous)
            previous = now
    return statistics.median(steps) if steps else math.inf


def choose_timer(requested: str, step: Callable[[], float] | None = None) -> tuple[str, str]:
    """(pytest-benchmark timer, why): `auto` takes the CPU clock when its step is fine."""
    if requested != "auto":
        return requested, "as asked"
    cpu_step = (step or (lambda: clock_step(time.process_time)))()
    if cpu_step <= CPU_CLOCK_STEP_LIMIT:
        return "time.process_time", f"CPU clock, step {cpu_step * 1e6:.2f} us"
    return (
        "time.perf_counter",
        f"wall clock: the CPU clock's step, {cpu_step * 1e6:.0f} us, is too coarse",
    )


@dataclass(frozen=True)
class SuiteOptions:
    suite: str = DEFAULT_SUITE
    max_time: float = 0.5
    min_rounds: int = 5
    # Each round runs the function long enough that the clock's step is noise: with
    # pytest-benchmark's default (5 us per round) a CPU clock that advances in steps of
    # 1-2 us reads rounds of a sub-microsecond function as 0 s, and such a benchmark falls
    # back to its noisy means (a CI run once compared one at 1.55x on unchanged code).
    min_time: float = 0.001
    timeout: float = 900.0
    # CPU time of the benchmark process: another process taking the CPU away (the usual
    # noise on a shared runner) does not inflate it, as it inflates wall-clock time.
    timer: str = "time.process_time"
    plugins: tuple[str, ...] = ()  # extra `-p NAME` arguments, e.g. ("-p", "asyncio")


def run_suite(
    tree: Path, out: Path, options: SuiteOptions, python: str = sys.executable
) -> tuple[int, dict[str, Any] | None, str]:
    """Run the micro suite of `tree` with its own code first on the path; (rc, report, log)."""
    if not (tree / options.suite).exists():
        return 0, None, f"{options.suite} does not exist in {tree}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
    env["PYTHONPATH"] = str(tree)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # Same string hashing on both sides: set and dict layouts then do not differ by run.
    env["PYTHONHASHSEED"] = "0"
    # Only pytest-benchmark: other plugins (hypothesis, faker, ...) cost seconds per run.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    command = [
        python,
        "-m",
        "pytest",
        options.suite,
        "-q",
        # The tree's pytest configuration (addopts with --benchmark-skip, filterwarnings,
        # plugin options) must not apply: an empty one, the tree as rootdir.
        "-c",
        os.devnull,
        "--rootdir",
        str(tree),
        "-p",
        "no:cacheprovider",
        "-p",
        "pytest_benchmark.plugin",
        *options.plugins,
        "--benchmark-only",
        "--benchmark-enable",
        f"--benchmark-json={out}",
        f"--benchmark-max-time={options.max_time}",
        f"--benchmark-min-rounds={options.min_rounds}",
        f"--benchmark-min-time={options.min_time}",
        f"--benchmark-timer={options.timer}",
    ]
    done = subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, timeout=options.timeout
    )
    report = json.loads(out.read_text()) if out.exists() else None
    return done.returncode, report, done.stdout[-4000:] + done.stderr[-4000:]


def run_gate(
    repo: Path,
    base_rev: str,
    head_rev: str | None,
    rounds: int,
    options: SuiteOptions,
    log: Any = print,
    confirm: Callable[[list[dict[str, Any]], list[dict[str, Any]]], int] = lambda b, h: 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Interleaved runs, base and head first in alternate rounds; both sides' reports, errors.

    After the `rounds`, `confirm(base_reports, head_reports)` says how many more rounds
    to run (0: none): a group that failed on a burst of noise is measured again, a real
    slowdown stays slow.
    """
    errors: list[str] = []
    base_reports: list[dict[str, Any]] = []
    head_reports: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        work = Path(tmp)
        base_tree = work / "base"
        base_tree.mkdir()
        export_tree(repo, base_rev, base_tree)
        head_tree = repo
        if head_rev is not None:
            head_tree = work / "head"
            head_tree.mkdir()
            export_tree(repo, head_rev, head_tree)

        def one_round(n: int, total: int) -> None:
            sides = [("base", base_tree, base_reports), ("head", head_tree, head_reports)]
            # A B, B A, A B, ...: a machine that slows down over a run (a turbo budget
            # running out, a cache filling) does not always hit the same side second.
            for side, tree, reports in sides if n % 2 == 0 else sides[::-1]:
                out = work / f"{side}-{n}.json"
                rc, report, output = run_suite(tree, out, options)
                if report is None and rc == 0:
                    log(f"round {n + 1}/{total} {side}: {output}")
                    continue
                if rc != 0:
                    message = f"{side} suite exited {rc} in round {n + 1}"
                    log(f"{message}\n{output}")
                    if side == "head":
                        errors.append(message)
                if report is not None:
                    reports.append(report)
                    log(f"round {n + 1}/{total} {side}: {len(report['benchmarks'])} benchmarks")

        for n in range(rounds):
            one_round(n, rounds)
        extra = confirm(base_reports, head_reports) if not errors else 0
        if extra > 0:
            log(f"a group is over the limit: {extra} more interleaved round(s) to confirm")
            for n in range(rounds, rounds + extra):
                one_round(n, rounds + extra)
    return base_reports, head_reports, errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate", description=__doc__)
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="repository (default: .)")
    parser.add_argument("--base", help="base revision (default: see above)")
    parser.add_argument("--head", help="head revision (default: the working tree)")
    parser.add_argument("--threshold", type=float, default=0.25, help="allowed slowdown")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per side")
    parser.add_argument(
        "--confirm-rounds",
        type=int,
        default=4,
        help="more interleaved runs when a group is over the limit (0: decide at once)",
    )
    parser.add_argument("--aggregate", choices=["geomean", "max"], default="geomean")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="benchmark path in each tree")
    parser.add_argument("--max-time", type=float, default=0.5, help="per benchmark, per run")
    parser.add_argument("--min-rounds", type=int, default=5)
    parser.add_argument(
        "--timer",
        default="auto",
        help="pytest-benchmark timer (default auto: process CPU time when its clock is "
        "fine-grained, else time.perf_counter, wall clock)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help=f"the result as a Markdown table (default: {DEFAULT_OUTPUT_DIR}/gate.md in the "
        f"repository; also appended to ${STEP_SUMMARY_ENV} when set)",
    )
    parser.add_argument(
        "--json",
        "--json-out",
        dest="json",
        type=Path,
        metavar="PATH",
        help=f"the result as JSON (default: {DEFAULT_OUTPUT_DIR}/gate.json in the repository)",
    )
    args = parser.parse_args(argv)
    if shutil.which("git") is None:
        print("gate: git not found", file=sys.stderr)
        return 2
    repo = args.repo.resolve()
    base, reason = resolve_base(repo, args.base)
    timer, why = choose_timer(args.timer)
    print(
        f"gate: base {base[:12]} ({reason}); head {args.head or 'working tree'}; "
        f"{args.rounds} interleaved round(s); threshold +{args.threshold:.0%}; "
        f"timer {timer} ({why})"
    )
    options = SuiteOptions(args.suite, args.max_time, args.min_rounds, timer=timer)

    def confirm(base_reports: list[dict[str, Any]], head_reports: list[dict[str, Any]]) -> int:
        if not base_reports or not head_reports:
            return 0
        first = compare(base_reports, head_reports, args.threshold, args.aggregate)
        return args.confirm_rounds if first.failed else 0

    base_reports, head_reports, errors = run_gate(
        repo, base, args.head, args.rounds, options, confirm=confirm
    )
    run = GateRun(base, reason, args.head or "working tree", timer, args.rounds, tuple(errors))
    markdown = args.markdown or repo / DEFAULT_OUTPUT_DIR / "gate.md"
    json_path = args.json or repo / DEFAULT_OUTPUT_DIR / "gate.json"
    if not head_reports:
        write_reports(None, run, markdown, json_path)
        print("gate: the head produced no benchmark results", file=sys.stderr)
        return 1
    comparison = compare(base_reports, head_reports, args.threshold, args.aggregate)
    if not base_reports:
        comparison = Comparison(
            comparison.groups, comparison.threshold, (*comparison.notes, "base has no suite")
        )
    print(format_table(comparison))
    print(f"gate: base {base[:12]} ({reason})")
    write_reports(comparison, run, markdown, json_path)
    for error in errors:
        print(f"gate: {error}", file=sys.stderr)
    return 1 if comparison.failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
