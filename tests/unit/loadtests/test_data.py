"""The load-test data generator: stable fates and values, shares, Zipf popularity."""

from __future__ import annotations

import collections
import random
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from loadtests.data import LATE, ON_TIME, LivePlan, Workload, ZipfSampler

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)


def test_fates_and_values_are_a_function_of_the_workload_only() -> None:
    a, b = Workload(seed=7), Workload(seed=7)

    assert [a.fate(s, SNAP, j) for s in range(50) for j in range(5)] == [
        b.fate(s, SNAP, j) for s in range(50) for j in range(5)
    ]
    assert a.observation(3, SNAP, 2) == b.observation(3, SNAP, 2)
    assert Workload(seed=8).observation(3, SNAP, 2) != a.observation(3, SNAP, 2)


def test_shares_of_outliers_late_and_missing_sources_are_as_configured() -> None:
    workload = Workload(series=2000, outlier_share=0.1, late_share=0.2, missing_share=0.05)

    counts = collections.Counter(
        workload.fate(s, SNAP, j) for s in range(workload.series) for j in range(5)
    )

    total = sum(counts.values())
    # a strict majority (3 of 5) = min_sources is always on time: every snap is publishable
    assert {workload.fate(s, SNAP, j) for s in range(100) for j in range(3)} == {"on_time"}
    assert workload.series_config()["min_sources"] == 3
    assert counts["outlier"] / total == pytest.approx(0.10, abs=0.01)
    assert counts["late"] / total == pytest.approx(0.20, abs=0.015)
    assert counts["missing"] / total == pytest.approx(0.05, abs=0.01)


def test_an_outlier_is_200_bps_from_its_series_and_the_others_within_5_bps() -> None:
    workload = Workload(series=300, outlier_share=0.2, late_share=0, missing_share=0)
    for series in range(workload.series):
        values = {j: workload.observation(series, SNAP, j)["value"] for j in range(5)}
        fates = {j: workload.fate(series, SNAP, j) for j in range(5)}
        normal = [v for j, v in values.items() if fates[j] == "on_time"]
        if not normal:
            continue
        centre = sorted(normal)[len(normal) // 2]
        for j, value in values.items():
            deviation_bps = abs(value / centre - 1) * 10_000
            if fates[j] == "outlier":
                assert 190 < deviation_bps < 210
            else:
                assert deviation_bps < 11


def test_items_split_on_time_and_late_and_never_post_missing_sources() -> None:
    workload = Workload(series=100, late_share=0.2, missing_share=0.1)

    on_time = list(workload.items(SNAP, ON_TIME))
    late = list(workload.items(SNAP, LATE))

    keys = {(i["reference_data_id"], i["source"]) for i in on_time + late}
    assert len(keys) == len(on_time) + len(late)
    missing = sum(workload.fate(s, SNAP, j) == "missing" for s in range(100) for j in range(5))
    assert len(keys) + missing == 500
    assert all(i["snap"] == "2026-01-15T14:00:00Z" for i in on_time)


def test_snaps_are_aligned_and_the_seeded_ones_are_closed() -> None:
    workload = Workload(snap_seconds=60, seed_snaps=3)
    now = datetime(2026, 1, 15, 14, 2, 30, tzinfo=UTC)

    assert workload.snap_at(now) == datetime(2026, 1, 15, 14, 2, tzinfo=UTC)
    assert workload.seed_snap_times(now) == [
        datetime(2026, 1, 15, 13, 59, tzinfo=UTC),
        datetime(2026, 1, 15, 14, 0, tzinfo=UTC),
        datetime(2026, 1, 15, 14, 1, tzinfo=UTC),
    ]


def test_the_live_plan_posts_the_current_snap_then_repeats_it() -> None:
    workload = Workload(series=10, sources=2, late_share=0.3, missing_share=0)
    plan = LivePlan(workload)
    now = SNAP + timedelta(seconds=5)

    first = plan.take(1000, now)

    current = [i for i in first if i["snap"] == "2026-01-15T14:00:00Z"]
    previous = [i for i in first if i["snap"] == "2026-01-15T13:59:00Z"]
    distinct = {(i["reference_data_id"], i["source"], i["snap"]) for i in first}
    assert len(current + previous) == 1000
    assert len(distinct) == len(list(workload.items(SNAP, ON_TIME))) + len(
        list(workload.items(SNAP - timedelta(minutes=1), LATE))
    )
    later = plan.take(5, now + timedelta(minutes=1))
    assert {i["snap"] for i in later} <= {"2026-01-15T14:01:00Z", "2026-01-15T14:00:00Z"}


def test_zipf_draws_follow_one_over_rank() -> None:
    sampler = ZipfSampler(1000, 1.0, random.Random(1))

    draws = collections.Counter(sampler() for _ in range(200_000))

    harmonic = sum(1 / k for k in range(1, 1001))
    assert sampler.probability(0) == pytest.approx(1 / harmonic)
    assert draws[0] / 200_000 == pytest.approx(1 / harmonic, rel=0.03)
    assert draws[1] / 200_000 == pytest.approx(1 / (2 * harmonic), rel=0.05)
    assert max(draws) < 1000


@pytest.mark.parametrize(
    "bad",
    [
        {"series": 0},
        {"batch_size": 5001},
        {"late_share": 0.6, "missing_share": 0.5},
        {"late_share": 0.3, "missing_share": 0.2},  # > 2/5: more than the unreliable sources
        {"outlier_share": -0.1},
    ],
)
def test_impossible_workloads_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        Workload(**bad)  # type: ignore[arg-type]


def test_the_pure_modules_do_not_import_locust() -> None:
    # Importing locust monkey-patches the process with gevent; these are imported by tests.
    code = (
        "import sys, loadtests.data, loadtests.slo, loadtests.shapes, loadtests.auth, "
        "loadtests.seed, loadtests.context; assert 'locust' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_seeded_snap_is_publishable_whatever_the_unreliable_sources_do() -> None:
    """The reliable majority always agrees within 5 bps: the median is one of theirs, so
    outliers (200 bps) cannot pull it away and leave a snap insufficient."""
    workload = Workload(series=300, outlier_share=0.2, late_share=0.1, missing_share=0.1)
    for snap in (SNAP, SNAP + timedelta(minutes=1), SNAP + timedelta(minutes=2)):
        for series in range(workload.series):
            on_time = [
                workload.observation(series, snap, j)["value"]
                for j in range(workload.sources)
                if workload.fate(series, snap, j) in ON_TIME
            ]
            median = statistics.median(on_time)
            agreeing = [v for v in on_time if abs(v - median) / median <= 50e-4]
            assert len(agreeing) >= workload.series_config()["min_sources"], (series, on_time)
