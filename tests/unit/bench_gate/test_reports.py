"""The gate's Markdown and JSON reports, on fabricated pytest-benchmark reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.gate import GateRun, as_json, compare, format_markdown, write_reports


def report(**minimums: tuple[str, float]) -> dict[str, Any]:
    return {
        "benchmarks": [
            {"fullname": f"suite.py::{name}", "group": group, "stats": {"min": fastest}}
            for name, (group, fastest) in minimums.items()
        ]
    }


RUN = GateRun("0123456789abcdef", "--base HEAD~1", "working tree", "time.process_time", 3)

BASE = [report(a=("decode", 10e-6), b=("decode", 40e-6), c=("quality", 5e-6))]
HEAD = [report(a=("decode", 14e-6), b=("decode", 56e-6), c=("quality", 5.5e-6), d=("new", 1e-6))]


def test_markdown_has_a_row_per_group_with_base_head_ratio_and_verdict() -> None:
    text = format_markdown(compare(BASE, HEAD, threshold=0.25), RUN)

    assert text.startswith("### Benchmark gate: FAILED :x:\n")
    assert "Base `0123456789ab` (--base HEAD~1), head working tree; 3 interleaved" in text
    assert "limit 1.25 x base per group" in text
    lines = text.splitlines()
    # decode: geometric means of 10/40 us and 14/56 us are 20 and 28 us, ratio 1.40.
    assert "| decode | 20 us | 28 us | 1.40 | **FAIL** |  |" in lines
    assert "| quality | 5 us | 5.5 us | 1.10 | pass |  |" in lines
    assert "| new | - | - | - | SKIP | not in the base: skipped |" in lines
    assert "| decode | `a` | 10 us | 14 us | 1.40 |" in lines
    assert "| new | `d` | - | 1 us | - |" in lines


def test_markdown_of_a_passing_gate_and_of_a_head_without_results() -> None:
    passing = format_markdown(compare(BASE, BASE), RUN)
    assert passing.startswith("### Benchmark gate: passed :white_check_mark:\n")
    assert "| decode | 20 us | 20 us | 1.00 | pass |  |" in passing

    broken = dataclasses.replace(RUN, errors=("head suite exited 2 in round 1",))
    text = format_markdown(None, broken)
    assert text.startswith("### Benchmark gate: FAILED")
    assert "- **error:** head suite exited 2 in round 1" in text
    assert "- **error:** the head produced no benchmark results" in text
    assert "| group |" not in text


def test_a_pipe_in_a_name_does_not_break_the_table() -> None:
    base = [report(**{"x[a|b]": ("g|h", 1e-6)})]
    text = format_markdown(compare(base, base), RUN)
    assert "| g\\|h | 1 us | 1 us | 1.00 | pass |  |" in text


def test_json_has_per_group_figures_ratio_and_verdict() -> None:
    data = as_json(compare(BASE, HEAD, threshold=0.25), RUN)

    assert data["verdict"] == "fail"
    assert data["base"] == "0123456789abcdef"
    assert data["threshold"] == 0.25
    groups = {g["group"]: g for g in data["groups"]}
    assert groups["decode"]["base_s"] == pytest.approx(20e-6)
    assert groups["decode"]["head_s"] == pytest.approx(28e-6)
    assert groups["decode"]["ratio"] == pytest.approx(1.4)
    assert (groups["decode"]["verdict"], groups["quality"]["verdict"]) == ("fail", "pass")
    assert groups["new"]["verdict"] == "skip"
    assert groups["new"]["ratio"] is None
    (bench_a, _) = groups["decode"]["benchmarks"]
    assert bench_a == {
        "name": "suite.py::a",
        "base_s": 10e-6,
        "head_s": 14e-6,
        "ratio": pytest.approx(1.4),
        "statistic": "min",
    }
    json.dumps(data)  # plain builtins


def test_write_reports_writes_both_files_and_appends_to_the_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    markdown, json_path = tmp_path / "out" / "gate.md", tmp_path / "out" / "gate.json"
    comparison = compare(BASE, HEAD)

    write_reports(comparison, RUN, markdown, json_path, {"GITHUB_STEP_SUMMARY": str(summary)})
    write_reports(comparison, RUN, markdown, json_path, {})

    assert markdown.read_text() == format_markdown(comparison, RUN)
    assert json.loads(json_path.read_text())["groups"][0]["group"] == "decode"
    # appended once (the second call had no GITHUB_STEP_SUMMARY), after what was there
    assert summary.read_text() == "earlier step\n" + format_markdown(comparison, RUN)
