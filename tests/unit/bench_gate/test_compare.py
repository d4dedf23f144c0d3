"""The gate's comparison on fabricated pytest-benchmark reports."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.gate import CPU_CLOCK_STEP_LIMIT, choose_timer, clock_step, compare, format_table


def report(**minimums: tuple[str, float]) -> dict[str, Any]:
    """A pytest-benchmark JSON report: `name=(group, fastest round in seconds)`."""
    return {
        "benchmarks": [
            {"fullname": f"suite.py::{name}", "group": group, "stats": {"min": fastest}}
            for name, (group, fastest) in minimums.items()
        ]
    }


def report_with_means(**stats: tuple[str, float, float]) -> dict[str, Any]:
    """`name=(group, fastest round, mean round)`, both in seconds."""
    return {
        "benchmarks": [
            {"fullname": f"suite.py::{name}", "group": g, "stats": {"min": low, "mean": mean}}
            for name, (g, low, mean) in stats.items()
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


def test_a_fastest_round_of_0_s_from_a_coarse_clock_is_compared_on_means() -> None:
    # The CI failure this guards: a CPU clock that did not advance during a round gave a
    # fastest round of 0 s, and the ratio's logarithm raised instead of comparing.
    base = [report_with_means(a=("g", 0.0, 10e-6), b=("g", 5e-6, 6e-6)) for _ in range(3)]
    head = [report_with_means(a=("g", 0.0, 15e-6), b=("g", 5e-6, 9e-6)) for _ in range(3)]

    result = compare(base, head)

    (group,) = result.groups
    by_name = {b.name: b for b in group.benchmarks}
    assert by_name["suite.py::a"].statistic == "mean"
    assert by_name["suite.py::a"].ratio == pytest.approx(1.5)
    assert by_name["suite.py::b"].statistic == "min"
    assert by_name["suite.py::b"].ratio == pytest.approx(1.0)
    assert group.ratio == pytest.approx(1.5**0.5)
    assert "compared on means" in group.note
    assert "(means)" in format_table(result)


def test_a_group_that_reads_0_s_even_on_means_fails_as_not_measurable() -> None:
    base = [report_with_means(a=("g", 0.0, 0.0))]
    head = [report_with_means(a=("g", 0.0, 0.0))]

    result = compare(base, head)

    assert result.groups[0].ratio is None
    assert result.groups[0].note == "read 0 s: not measurable"
    assert result.failed


def test_auto_timer_takes_the_cpu_clock_only_when_its_step_is_fine() -> None:
    fine = choose_timer("auto", step=lambda: 0.7e-6)
    coarse = choose_timer("auto", step=lambda: 4e-3)

    assert fine[0] == "time.process_time"
    assert coarse[0] == "time.perf_counter"
    assert "4000 us" in coarse[1]
    assert choose_timer("time.process_time", step=lambda: 1.0) == ("time.process_time", "as asked")


def test_clock_step_measures_the_step_of_a_quantised_clock() -> None:
    import time

    def quantised() -> float:  # a CPU clock that only moves in 1 ms ticks
        return (time.perf_counter() // 1e-3) * 1e-3

    assert clock_step(quantised, spin=0.02) == pytest.approx(1e-3, rel=0.01)
    assert clock_step(time.perf_counter, spin=0.01) < CPU_CLOCK_STEP_LIMIT
    assert clock_step(lambda: 1.0, spin=0.005) == float("inf")
