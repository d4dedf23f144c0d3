from __future__ import annotations

from datetime import timedelta

import pytest

from app.domain.reconciliation import (
    Exclusion,
    all_expected_reported,
    current_observations,
    priority_rank,
    reconcile,
    within_bounds,
)
from app.domain.series import SeriesConfig

from .builders import SNAP, observation

ABC = SeriesConfig(expected_sources=("A", "B", "C"))


# --- the worked examples of domain.md -------------------------------------------------


def test_example_1_three_agreeing_sources_give_the_median_with_full_quality() -> None:
    obs = [observation("A", 100.00), observation("B", 100.02), observation("C", 99.99)]

    result = reconcile(ABC, SNAP, obs, previous_value=None)

    assert result.value == 100.00
    assert result.status == "official"
    assert result.quality.score == 1.0
    assert result.sources_used == ("A", "B", "C")
    assert result.sources_excluded == ()


def test_example_2_two_of_three_sources_after_the_window_is_suspect() -> None:
    obs = [observation("A", 100.00), observation("B", 100.02)]

    result = reconcile(ABC, SNAP, obs, previous_value=None)

    assert result.value == 100.01  # decimal arithmetic: not 100.00999999999999
    assert result.quality.completeness == 0.6667
    assert result.quality.score == 0.6667
    assert result.status == "suspect"


def test_example_3_a_far_source_is_an_outlier_against_the_median_of_all() -> None:
    obs = [observation("A", 100.0), observation("B", 100.01), observation("C", 103.0)]

    result = reconcile(ABC, SNAP, obs, previous_value=None)

    assert result.value == 100.005
    assert result.sources_used == ("A", "B")
    assert result.sources_excluded == (Exclusion(source="C", reason="outlier"),)
    assert result.quality.consistency == 0.6667
    assert result.quality.score == 0.6667
    assert result.status == "suspect"


# --- current observation per source ---------------------------------------------------


def test_a_source_correcting_itself_counts_with_its_latest_observed_at() -> None:
    first = observation("A", 100.0, observed_after=0.0, received_after=1.0)
    correction = observation("A", 101.0, observed_after=5.0, received_after=2.0)

    result = reconcile(SeriesConfig(), SNAP, [correction, first], previous_value=None)

    assert result.value == 101.0
    assert result.observation_ids == (correction.observation_id,)


def test_same_observed_at_the_latest_received_wins() -> None:
    early = observation("A", 100.0, received_after=1.0, observation_id="z-early")
    late = observation("A", 102.0, received_after=9.0, observation_id="a-late")

    assert current_observations([late, early], SNAP) == [late]
    assert current_observations([early, late], SNAP) == [late]


def test_full_tie_is_broken_by_the_greatest_observation_id() -> None:
    one = observation("A", 100.0, observation_id="id-1")
    two = observation("A", 200.0, observation_id="id-2")

    assert current_observations([two, one], SNAP) == [two]
    assert current_observations([one, two], SNAP) == [two]


def test_observations_of_another_snap_are_refused() -> None:
    other = observation("A", 1.0, snap=SNAP + timedelta(hours=1))

    with pytest.raises(ValueError, match="not 2026-01-15T14:00:00"):
        reconcile(SeriesConfig(), SNAP, [observation("B", 1.0), other], previous_value=None)


# --- exclusions -----------------------------------------------------------------------


def test_values_outside_bounds_are_invalid_and_bounds_are_inclusive() -> None:
    config = SeriesConfig(bounds=(90.0, 110.0))
    obs = [
        observation("low", 89.99),
        observation("min", 90.0),
        observation("max", 110.0),
        observation("high", 110.01),
    ]

    result = reconcile(config, SNAP, obs, previous_value=None)

    assert result.sources_excluded == (
        Exclusion(source="high", reason="invalid"),
        Exclusion(source="low", reason="invalid"),
    )
    assert result.sources_used == ("max", "min")


def test_one_sided_bounds_leave_the_other_side_open() -> None:
    assert within_bounds(-1e300, (None, 0.0))
    assert not within_bounds(0.1, (None, 0.0))
    assert within_bounds(1e300, (0.0, None))
    assert not within_bounds(-0.1, (0.0, None))
    assert within_bounds(5.0, None)


def test_observations_older_than_the_staleness_limit_are_stale() -> None:
    config = SeriesConfig(staleness_seconds=300)
    obs = [
        observation("A", 100.0),
        observation("edge", 100.0, observed_after=-300.0),  # exactly the limit: fresh
        observation("old", 100.0, observed_after=-300.001),
    ]

    result = reconcile(config, SNAP, obs, previous_value=None)

    assert result.sources_excluded == (Exclusion(source="old", reason="stale"),)
    assert result.sources_used == ("A", "edge")


def test_invalid_is_checked_before_stale() -> None:
    config = SeriesConfig(bounds=(0.0, 10.0))
    obs = [observation("A", 5.0), observation("B", 50.0, observed_after=-3600.0)]

    result = reconcile(config, SNAP, obs, previous_value=None)

    assert result.sources_excluded == (Exclusion(source="B", reason="invalid"),)


def test_outliers_are_judged_only_among_sources_that_are_valid_and_fresh() -> None:
    # Without the invalid 1000.0 the median is 100.0 and 100.4 is within 50 bps.
    config = SeriesConfig(bounds=(None, 500.0))
    obs = [
        observation("A", 100.0),
        observation("B", 100.4),
        observation("C", 99.9),
        observation("D", 1000.0),
        observation("E", 1000.0),
    ]

    result = reconcile(config, SNAP, obs, previous_value=None)

    assert result.sources_used == ("A", "B", "C")
    assert [e.reason for e in result.sources_excluded] == ["invalid", "invalid"]


def test_with_two_sources_neither_is_an_outlier() -> None:
    obs = [observation("A", 100.0), observation("B", 200.0)]

    result = reconcile(SeriesConfig(), SNAP, obs, previous_value=None)

    assert result.sources_used == ("A", "B")
    assert result.value == 150.0


def test_a_value_exactly_on_the_tolerance_is_kept_and_just_beyond_is_an_outlier() -> None:
    config = SeriesConfig(tolerance_bps=50)
    kept = [observation("A", 100.0), observation("B", 100.0), observation("C", 100.5)]
    cut = [observation("A", 100.0), observation("B", 100.0), observation("C", 100.5001)]

    assert reconcile(config, SNAP, kept, previous_value=None).sources_excluded == ()
    assert reconcile(config, SNAP, cut, previous_value=None).sources_excluded == (
        Exclusion(source="C", reason="outlier"),
    )


def test_one_bp_tolerance_is_exact_on_decimal_values() -> None:
    # In binary floats |100.01 - 100| * 10000 is 100.00000000005 > 100: a false outlier.
    config = SeriesConfig(tolerance_bps=1)
    obs = [observation("A", 100.0), observation("B", 100.0), observation("C", 100.01)]

    assert reconcile(config, SNAP, obs, previous_value=None).sources_excluded == ()


def test_with_a_zero_median_every_non_zero_value_is_an_outlier() -> None:
    obs = [observation("A", 0.0), observation("B", 0.0), observation("C", 1e-9)]

    result = reconcile(SeriesConfig(), SNAP, obs, previous_value=None)

    assert result.sources_excluded == (Exclusion(source="C", reason="outlier"),)
    assert result.value == 0.0


def test_two_far_apart_camps_leave_no_consensus_and_no_value() -> None:
    obs = [
        observation("A", 100.0),
        observation("B", 100.0),
        observation("C", 200.0),
        observation("D", 200.0),
    ]

    result = reconcile(SeriesConfig(), SNAP, obs, previous_value=None)

    assert result.status == "insufficient"
    assert result.value is None
    assert {e.reason for e in result.sources_excluded} == {"outlier"}
    assert result.quality.consistency == 0.0


def test_late_data_is_used_not_excluded() -> None:
    obs = [observation("A", 100.0), observation("B", 100.0, received_after=3600.0)]

    result = reconcile(SeriesConfig(), SNAP, obs, previous_value=None)

    assert result.sources_used == ("A", "B")
    assert result.quality.timeliness == 0.5


# --- min_sources ----------------------------------------------------------------------


def test_fewer_usable_sources_than_min_sources_is_insufficient() -> None:
    config = SeriesConfig(expected_sources=("A", "B", "C"), min_sources=2, bounds=(0.0, None))
    obs = [observation("A", 100.0), observation("B", -1.0)]

    result = reconcile(config, SNAP, obs, previous_value=None)

    assert result.status == "insufficient"
    assert result.value is None
    assert result.sources_used == ("A",)
    assert result.sources_excluded == (Exclusion(source="B", reason="invalid"),)


def test_exactly_min_sources_usable_gives_a_value() -> None:
    config = SeriesConfig(min_sources=2)
    obs = [observation("A", 100.0), observation("B", 101.0)]

    assert reconcile(config, SNAP, obs, previous_value=None).value == 100.5


def test_no_observations_is_insufficient() -> None:
    result = reconcile(SeriesConfig(), SNAP, [], previous_value=None)

    assert result.status == "insufficient"
    assert result.value is None
    assert result.quality.score == 0.0


# --- methods --------------------------------------------------------------------------


def test_median_of_an_odd_count_is_the_middle_value() -> None:
    obs = [
        observation(s, v) for s, v in zip("ABCDE", [10.0, 10.02, 10.01, 9.99, 10.03], strict=True)
    ]

    assert reconcile(SeriesConfig(), SNAP, obs, previous_value=None).value == 10.01


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    obs = [observation(s, v) for s, v in zip("ABCD", [10.0, 10.03, 10.01, 10.02], strict=True)]

    assert reconcile(SeriesConfig(), SNAP, obs, previous_value=None).value == 10.015


def test_trimmed_mean_drops_min_and_max_from_four_values() -> None:
    config = SeriesConfig(method="trimmed_mean")
    obs = [observation(s, v) for s, v in zip("ABCD", [100.0, 100.1, 100.3, 100.2], strict=True)]

    assert reconcile(config, SNAP, obs, previous_value=None).value == 100.15


def test_trimmed_mean_of_three_values_is_their_plain_mean() -> None:
    config = SeriesConfig(method="trimmed_mean")
    obs = [observation(s, v) for s, v in zip("ABC", [100.0, 100.1, 100.3], strict=True)]

    result = reconcile(config, SNAP, obs, previous_value=None)

    assert result.value == pytest.approx(300.4 / 3, abs=1e-12)
    assert result.method == "trimmed_mean"


def test_trimmed_mean_is_exact_on_decimals() -> None:
    config = SeriesConfig(method="trimmed_mean")
    obs = [observation(s, 0.1) for s in "ABC"]

    # math.fsum([0.1] * 3) / 3 would give 0.10000000000000002.
    assert reconcile(config, SNAP, obs, previous_value=None).value == 0.1


def test_priority_takes_the_highest_priority_remaining_source() -> None:
    config = SeriesConfig(method="priority", priority=("B", "A"), bounds=(0.0, None))
    obs = [observation("A", 100.0), observation("B", -5.0), observation("C", 100.2)]

    result = reconcile(config, SNAP, obs, previous_value=None)

    assert result.value == 100.0  # B is invalid, A is next in the list
    assert result.method == "priority"


def test_priority_falls_back_to_unlisted_sources_by_name() -> None:
    config = SeriesConfig(method="priority", priority=("X",))
    obs = [observation("C", 100.2), observation("B", 100.1), observation("A", 100.3)]

    assert reconcile(config, SNAP, obs, previous_value=None).value == 100.3


def test_priority_rank_orders_listed_then_unlisted_by_name() -> None:
    config = SeriesConfig(priority=("kraken", "binance"))
    sources = ["zeta", "binance", "alpha", "kraken"]

    assert sorted(sources, key=lambda s: priority_rank(config, s)) == [
        "kraken",
        "binance",
        "alpha",
        "zeta",
    ]


# --- precision ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "precision", "expected"),
    [
        ([100.005], 2, 100.01),  # round(100.005, 2) == 100.0
        ([2.675], 2, 2.68),  # round(2.675, 2) == 2.67
        ([2.5], 0, 3.0),  # half up, not half even
        ([-2.5], 0, -3.0),  # ties away from zero
        ([100.0, 100.01], 2, 100.01),  # exact median 100.005 rounds up
        ([1.23456], 3, 1.235),
        ([-0.001], 2, 0.0),  # never -0.0
        ([1e300], 12, 1e300),
    ],
)
def test_values_are_rounded_half_up_to_precision(
    values: list[float], precision: int, expected: float
) -> None:
    config = SeriesConfig(precision=precision)
    obs = [observation(f"S{i}", v) for i, v in enumerate(values)]

    value = reconcile(config, SNAP, obs, previous_value=None).value

    assert value == expected
    assert str(value) != "-0.0"


def test_no_precision_keeps_the_value_unrounded() -> None:
    obs = [observation("A", 1.23456789012345)]

    assert reconcile(SeriesConfig(), SNAP, obs, previous_value=None).value == 1.23456789012345


# --- result shape ---------------------------------------------------------------------


def test_result_lists_sorted_sources_and_the_used_observation_ids() -> None:
    config = SeriesConfig(bounds=(0.0, None))
    obs = [
        observation("zeta", 100.0, observation_id="z1"),
        observation("beta", -1.0, observation_id="b1"),
        observation("alpha", 100.0, observation_id="a1"),
        observation("alpha", 100.0, observation_id="a0", observed_after=-1.0),
    ]

    result = reconcile(config, SNAP, obs, previous_value=None)

    assert result.sources_used == ("alpha", "zeta")
    assert result.observation_ids == ("a1", "z1")
    assert result.sources_reporting == frozenset({"alpha", "beta", "zeta"})


def test_all_expected_reported_counts_excluded_sources_as_reported() -> None:
    config = SeriesConfig(expected_sources=("A", "B"), bounds=(0.0, None))
    both = reconcile(
        config, SNAP, [observation("A", 1.0), observation("B", -1.0)], previous_value=None
    )
    one = reconcile(config, SNAP, [observation("A", 1.0)], previous_value=None)

    assert all_expected_reported(config, both)
    assert not all_expected_reported(config, one)
    assert all_expected_reported(SeriesConfig(), one)  # none expected: vacuously true
