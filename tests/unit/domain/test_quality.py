from __future__ import annotations

import pytest

from app.domain.quality import Quality, assess_quality, is_spike, quality_score, quality_status
from app.domain.series import QualityPolicy, QualityWeights, SeriesConfig

from .builders import SNAP, observation


def assess(
    config: SeriesConfig,
    reporting: set[str],
    used_late: dict[str, bool],
    *,
    value: float | None = 100.0,
    previous_value: float | None = None,
) -> Quality:
    used = [
        observation(source, 100.0, received_after=3600.0 if late else 1.0)
        for source, late in used_late.items()
    ]
    return assess_quality(
        config,
        SNAP,
        reporting_sources=reporting,
        used=used,
        value=value,
        previous_value=previous_value,
    )


# --- completeness ---------------------------------------------------------------------


def test_completeness_is_the_share_of_expected_sources_that_reported() -> None:
    config = SeriesConfig(expected_sources=("A", "B", "C", "D"))

    quality = assess(config, {"A", "B", "X"}, {"A": False, "B": False, "X": False})

    assert quality.completeness == 0.5  # X is not expected and does not count


def test_without_expected_sources_completeness_is_full_once_min_sources_report() -> None:
    config = SeriesConfig(min_sources=2)

    assert assess(config, {"A", "B"}, {"A": False, "B": False}).completeness == 1.0
    assert assess(config, {"A", "B", "C"}, {"A": False}).completeness == 1.0


def test_without_expected_sources_completeness_is_partial_below_min_sources() -> None:
    config = SeriesConfig(min_sources=4)

    assert assess(config, {"A"}, {"A": False}, value=None).completeness == 0.25


# --- consistency ----------------------------------------------------------------------


def test_consistency_is_the_share_of_reporting_sources_that_were_used() -> None:
    quality = assess(SeriesConfig(), {"A", "B", "C", "D"}, {"A": False, "B": False, "C": False})

    assert quality.consistency == 0.75


def test_consistency_with_nothing_reported_is_zero() -> None:
    assert assess(SeriesConfig(), set(), {}, value=None).consistency == 0.0


# --- timeliness -----------------------------------------------------------------------


def test_timeliness_is_the_share_of_used_observations_received_in_the_window() -> None:
    quality = assess(SeriesConfig(), {"A", "B", "C"}, {"A": False, "B": True, "C": True})

    assert quality.timeliness == 0.3333


def test_received_exactly_at_window_close_is_on_time() -> None:
    config = SeriesConfig(window_seconds=60)
    used = [observation("A", 1.0, received_after=60.0), observation("B", 1.0, received_after=60.5)]

    quality = assess_quality(
        config, SNAP, reporting_sources={"A", "B"}, used=used, value=1.0, previous_value=None
    )

    assert quality.timeliness == 0.5


def test_timeliness_with_nothing_used_is_zero() -> None:
    assert assess(SeriesConfig(), {"A"}, {}, value=None).timeliness == 0.0


# --- validity -------------------------------------------------------------------------


def test_a_jump_beyond_max_jump_pct_halves_validity() -> None:
    config = SeriesConfig(max_jump_pct=5.0)

    spike = assess(config, {"A"}, {"A": False}, value=106.0, previous_value=100.0)
    calm = assess(config, {"A"}, {"A": False}, value=104.0, previous_value=100.0)

    assert spike.validity == 0.5
    assert spike.score == 0.5
    assert calm.validity == 1.0


def test_validity_is_full_without_max_jump_pct_or_previous_value_or_value() -> None:
    with_limit = SeriesConfig(max_jump_pct=1.0)

    assert assess(SeriesConfig(), {"A"}, {"A": False}, value=1e6, previous_value=1.0).validity == 1
    assert assess(with_limit, {"A"}, {"A": False}, value=1e6, previous_value=None).validity == 1
    assert assess(with_limit, {"A"}, {}, value=None, previous_value=1.0).validity == 1


@pytest.mark.parametrize(
    ("value", "previous", "limit", "expected"),
    [
        (105.0, 100.0, 5.0, False),  # exactly the limit is not a spike
        (105.01, 100.0, 5.0, True),
        (94.99, 100.0, 5.0, True),  # downward too
        (-110.0, -100.0, 5.0, True),  # relative to |previous|
        (0.0, 0.0, 5.0, False),
        (0.001, 0.0, 5.0, True),  # any move away from 0
        (1.1, 1.0, 10.0, False),  # 1.1 - 1.0 is 0.10000000000000009 in floats
    ],
)
def test_is_spike(value: float, previous: float, limit: float, expected: bool) -> None:
    assert is_spike(value, previous, limit) is expected


# --- score ----------------------------------------------------------------------------


def test_default_score_is_the_product_of_the_dimensions() -> None:
    score = quality_score(
        QualityPolicy(), completeness=0.5, timeliness=0.8, consistency=1.0, validity=0.5
    )

    assert score == 0.2


def test_product_weights_are_exponents_and_zero_leaves_a_dimension_out() -> None:
    policy = QualityPolicy(weights=QualityWeights(completeness=2.0, timeliness=0.0))

    score = quality_score(policy, completeness=0.5, timeliness=0.0, consistency=1.0, validity=1.0)

    assert score == 0.25


def test_weighted_mean_formula() -> None:
    policy = QualityPolicy(
        formula="weighted_mean",
        weights=QualityWeights(completeness=2.0, timeliness=1.0, consistency=1.0, validity=0.0),
    )

    score = quality_score(policy, completeness=0.5, timeliness=1.0, consistency=0.5, validity=0.0)

    assert score == 0.625  # (2 x 0.5 + 1 + 0.5) / 4


def test_weighted_mean_with_all_weights_zero_scores_zero() -> None:
    policy = QualityPolicy(
        formula="weighted_mean",
        weights=QualityWeights(completeness=0, timeliness=0, consistency=0, validity=0),
    )

    assert quality_score(policy, completeness=1, timeliness=1, consistency=1, validity=1) == 0.0


def test_score_is_rounded_to_four_decimals_and_clamped() -> None:
    third = quality_score(
        QualityPolicy(), completeness=1 / 3, timeliness=1, consistency=1, validity=1
    )
    over = quality_score(
        QualityPolicy(formula="weighted_mean"),
        completeness=1.5,
        timeliness=1.5,
        consistency=1.5,
        validity=1.5,
    )

    assert third == 0.3333
    assert over == 1.0


def test_status_is_suspect_below_the_threshold_only() -> None:
    policy = QualityPolicy(threshold=0.95)

    def quality(score: float) -> Quality:
        return Quality(score=score, completeness=1, timeliness=1, consistency=1, validity=1)

    assert quality_status(policy, quality(0.95)) == "official"
    assert quality_status(policy, quality(0.9499)) == "suspect"
    assert quality_status(QualityPolicy(threshold=0.5), quality(0.6)) == "official"


def test_threshold_from_the_series_policy_decides_the_status_of_a_result() -> None:
    lenient = SeriesConfig(
        expected_sources=("A", "B", "C"), quality_policy=QualityPolicy(threshold=0.6)
    )

    quality = assess(lenient, {"A", "B"}, {"A": False, "B": False})

    assert quality.score == 0.6667
    assert quality_status(lenient.quality_policy, quality) == "official"
