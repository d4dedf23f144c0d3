"""The gate's comparison on fabricated pytest-benchmark reports."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.gate import compare, format_table


def report(**minimums: tuple[str, float]) -> dict[str, Any]:
    """A pytest-benchmark JSON report: `name=(group, fastest round in seconds)`."""
    return {
        "benchmarks": [
            {"fullname": f"suite.py::{name}", "group": group, "stats": {"min": fastest}}
            for name, (group, fastest) in minimums.items()
        ]
    }


def test_a_40_percent_slowdown_fails_its_group_and_10_percent_passes() -> None:
    base = [report(a=("decode", 10e-6), b=("quality", 5e-6)) for _ in range(3)]
    head = [report(a=("decode", 14e-6), b=("quality", 5.5e-6)) for _ in range(3)]

    result = compare(base, head, threshold=0.25)

    verdicts = {g.group: (round(g.ratio or 0, 2), g.failed) for g in result.groups}
    assert verdicts == {"decode": (1.4, True), "quality": (1.1, False)}
    assert result.failed
    table = format_table(result)
    assert "FAIL" in table
    assert "gate FAILED" in table


def test_the_fastest_run_decides_so_noisy_runs_on_either_side_do_not() -> None:
    base = [report(a=("g", 10e-6)), report(a=("g", 16e-6)), report(a=("g", 10.5e-6))]
    head = [report(a=("g", 30e-6)), report(a=("g", 29e-6)), report(a=("g", 11e-6))]

    result = compare(base, head)

    assert result.groups[0].ratio == pytest.approx(1.1)
    assert not result.failed


def test_a_slowdown_in_every_run_still_fails() -> None:
    base = [report(a=("g", 10e-6)) for _ in range(4)]
    head = [report(a=("g", 13e-6)), report(a=("g", 14e-6)), report(a=("g", 13.5e-6))]

    assert compare(base, head).groups[0].ratio == pytest.approx(1.3)
    assert compare(base, head).failed


def test_the_group_ratio_is_the_geometric_mean_unless_max_is_asked() -> None:
    base = [report(a=("g", 1.0), b=("g", 1.0))]
    head = [report(a=("g", 1.6), b=("g", 0.9))]

    assert compare(base, head).groups[0].ratio == pytest.approx((1.6 * 0.9) ** 0.5)
    assert not compare(base, head).failed
    assert compare(base, head, aggregate="max").failed


def test_groups_and_benchmarks_the_base_lacks_are_skipped_with_a_note() -> None:
    base = [report(a=("old", 1.0), gone=("old", 1.0))]
    head = [report(a=("old", 1.0), new=("old", 9.0), fresh=("new-group", 1.0))]

    result = compare(base, head)

    groups = {g.group: g for g in result.groups}
    assert groups["new-group"].ratio is None
    assert groups["new-group"].note == "not in the base: skipped"
    assert groups["old"].ratio == pytest.approx(1.0)
    assert groups["old"].note == "1 new benchmark(s) not compared"
    assert not result.failed
    assert any("suite.py::gone" in note for note in result.notes)
    assert "SKIP" in format_table(result)
