"""Reports: assumptions at the top, a verdict per check, JSON that loads back."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec
import pytest

from app.settings import Settings
from benchmarks.sizing.cli import load_measurements, load_model_inputs, register
from benchmarks.sizing.model import Assumptions, Deployment, Workload, evaluate
from benchmarks.sizing.report import build_report, to_json, to_markdown
from tests.unit.sizing.fixtures import measurements


def report_for(workload: Workload) -> tuple[str, bytes]:
    m = measurements()
    checks = evaluate(workload, Deployment(), m, Assumptions())
    report = build_report(workload, Deployment(), m, Assumptions(), checks)
    return to_markdown(report), to_json(report)


def test_the_markdown_starts_with_assumptions_and_gives_each_check_a_verdict() -> None:
    markdown, _ = report_for(Workload())

    assumptions = markdown.index("## Assumptions")
    checks = markdown.index("## Checks")
    assert assumptions < markdown.index("## Measured unit costs") < checks
    assert "`query_rate_per_second`" in markdown[assumptions:checks]
    assert "cache.r6g.2xlarge" in markdown[assumptions:checks]
    rows = [line for line in markdown[checks:].splitlines() if line.startswith("| `")]
    assert len(rows) == 13
    assert all(("PASS" in row) != ("**FAIL**" in row) for row in rows)


def test_the_json_report_loads_back_as_measurements(tmp_path: Path) -> None:
    _, raw = report_for(Workload())
    (tmp_path / "sizing.json").write_bytes(raw)

    decoded = msgspec.json.decode(raw)
    assert decoded["checks"][0]["utilisation"] > 0
    assert isinstance(decoded["passed"], bool)
    assert load_measurements(tmp_path / "sizing.json") == measurements()


def test_the_workload_file_overrides_defaults_and_refuses_typos(tmp_path: Path) -> None:
    good = tmp_path / "w.toml"
    good.write_text(
        "[workload]\nseries = 500\n[workload.read_mix]\nlatest = 0.9\nhistory = 0.0\n"
        "[deployment]\ncache_nodes = 2\n[assumptions]\ncpu_target = 0.5\n"
    )
    workload, deployment, assumptions = load_model_inputs(good)
    assert (workload.series, workload.read_mix.latest, deployment.cache_nodes) == (500, 0.9, 2)
    assert assumptions.cpu_target == 0.5

    bad = tmp_path / "bad.toml"
    bad.write_text("[workload]\nseriess = 500\n")
    with pytest.raises(ValueError, match="seriess"):
        load_model_inputs(bad)


def test_qis_sizing_from_json_writes_both_reports(tmp_path: Path) -> None:
    source = tmp_path / "measurements.json"
    source.write_bytes(msgspec.json.encode(measurements()))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sizing", "--from-json", str(source), "--out", str(tmp_path / "r")])

    assert args.run(Settings(), args) == 0
    assert (tmp_path / "r" / "sizing.md").read_text().startswith("# Sizing report")
    assert msgspec.json.decode((tmp_path / "r" / "sizing.json").read_bytes())["checks"]
    failing = parser.parse_args(
        ["sizing", "--from-json", str(source), "--out", str(tmp_path / "r"), "--fail-on-check"]
    )
    expected = 0 if all(c.passed for c in evaluate(Workload(), Deployment(), measurements())) else 1
    assert failing.run(Settings(), failing) == expected
