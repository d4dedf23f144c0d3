"""`qis sizing`: measure unit costs on the stack (or load them), run the model, write reports.

    qis sizing [--measure | --from-json FILE] [--workload FILE.toml] [--out DIR]

Writes DIR/sizing.md, DIR/sizing.json and (when measuring) DIR/measurements.json; prints
the checks. Exit 0, or 1 with `--fail-on-check` when a check fails. The workload TOML
has optional tables `[workload]`, `[workload.read_mix]`, `[deployment]` and
`[assumptions]` whose keys override the defaults of `benchmarks.sizing.model`.
"""

from __future__ import annotations

import argparse
import asyncio
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from app.entrypoints.progress import Progress
from app.settings import Settings
from benchmarks.sizing.model import Assumptions, Deployment, Measurements, Workload, evaluate
from benchmarks.sizing.report import build_report, quantity, to_json, to_markdown


def register(subparsers: Any) -> None:
    """Add the `sizing` sub-command to `qis`'s argument parser."""
    parser = subparsers.add_parser(
        "sizing", help="check the ElastiCache and Aurora sizing against measured unit costs"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--measure", action="store_true", help="measure on the stack in QIS_* (the default)"
    )
    source.add_argument(
        "--from-json", type=Path, help="measurements.json (or a sizing.json) from earlier"
    )
    parser.add_argument("--workload", type=Path, help="TOML overriding the model's defaults")
    parser.add_argument("--out", type=Path, default=Path(".local/sizing"), help="report folder")
    parser.add_argument("--quick", action="store_true", help="smaller samples (tests)")
    parser.add_argument("--fail-on-check", action="store_true", help="exit 1 when a check fails")
    parser.set_defaults(run=run)


def load_model_inputs(path: Path | None) -> tuple[Workload, Deployment, Assumptions]:
    """Workload, deployment and assumptions: defaults, overridden by the TOML file."""
    tables: dict[str, Any] = tomllib.loads(path.read_text()) if path else {}
    unknown = set(tables) - {"workload", "deployment", "assumptions"}
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {sorted(unknown)}")
    try:
        return (
            msgspec.convert(tables.get("workload", {}), Workload),
            msgspec.convert(tables.get("deployment", {}), Deployment),
            msgspec.convert(tables.get("assumptions", {}), Assumptions),
        )
    except msgspec.ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_measurements(path: Path) -> Measurements:
    raw = msgspec.json.decode(path.read_bytes())
    if isinstance(raw, dict) and "measurements" in raw:
        raw = raw["measurements"]
    return msgspec.convert(raw, Measurements)


def run(settings: Settings, args: argparse.Namespace) -> int:
    workload, deployment, assumptions = load_model_inputs(args.workload)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        progress = Progress("qis sizing", steps=1)
        measurements = load_measurements(args.from_json)
    else:
        from benchmarks.sizing.measure import MEASURE_STEPS, measure

        # Measuring takes a minute or more: a line per step on a terminal, JSON otherwise.
        progress = Progress("qis sizing", steps=MEASURE_STEPS + 1)
        measurements = asyncio.run(measure(settings, quick=args.quick, progress=progress))
        (out / "measurements.json").write_bytes(
            msgspec.json.format(msgspec.json.encode(measurements), indent=2)
        )
    with progress.step("model and reports"):
        checks = evaluate(workload, deployment, measurements, assumptions)
        report = build_report(workload, deployment, measurements, assumptions, checks)
        (out / "sizing.md").write_text(to_markdown(report))
        (out / "sizing.json").write_bytes(to_json(report))
    for c in checks:
        verdict = "PASS" if c.passed else "FAIL"
        print(
            f"{verdict}  {c.name:28} {quantity(c.projected, c.unit):>18} of "
            f"{quantity(c.limit, c.unit):>18} ({c.utilisation:4.0%})  runs out at {c.break_even}"
        )
    print(f"reports: {out / 'sizing.md'}, {out / 'sizing.json'}")
    return 1 if args.fail_on_check and not report.passed else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.sizing.cli ...`: the same command without the `qis` wiring."""
    import os
    import sys

    from app.settings import load_settings

    parser = argparse.ArgumentParser(prog="qis")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sizing", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.run(load_settings(os.environ), args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
