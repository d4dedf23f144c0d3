"""Properties that must hold for any observations and any valid configuration."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from app.domain.decimal_values import as_decimal, round_half_up, to_float
from app.domain.observation import Observation
from app.domain.reconciliation import all_expected_reported, reconcile
from app.domain.series import QualityPolicy, QualityWeights, SeriesConfig, validate_series_config
from app.domain.versions import decide_version, official_value

from .builders import SERIES, SNAP

SOURCES = ("binance", "bitstamp", "coinbase", "kraken", "okx", "gemini")

values = st.one_of(
    st.floats(min_value=99.0, max_value=101.0),  # a consensus with small disagreements
    st.sampled_from([0.0, -0.0, 100.0, 100.5, 103.0]),
    st.floats(allow_nan=False, allow_infinity=False),  # anything finite, extremes included
)


@st.composite
def observation_sets(draw: st.DrawFn) -> list[Observation]:
    count = draw(st.integers(min_value=0, max_value=12))
    observations = []
    for index in range(count):
        observed = draw(st.sampled_from([-600, -300, -1, 0, 0, 2, 5]))  # some stale
        received = observed + draw(st.sampled_from([0, 1, 30, 61, 3600]))  # some late
        observations.append(
            Observation(
                # Ids are unique in the store (primary key), so they are here.
                observation_id=f"id-{index:02d}",
                reference_data_id=SERIES,
                source=draw(st.sampled_from(SOURCES)),
                snap=SNAP,
                value=draw(values),
                observed_at=SNAP + timedelta(seconds=observed),
                received_at=SNAP + timedelta(seconds=received),
            )
        )
    return observations


@st.composite
def configs(draw: st.DrawFn) -> SeriesConfig:
    expected = tuple(draw(st.lists(st.sampled_from(SOURCES), unique=True, max_size=5)))
    low = draw(st.none() | st.floats(min_value=-1e3, max_value=99.5))
    high = draw(st.none() | st.floats(min_value=100.5, max_value=1e6))
    weights = st.floats(min_value=0.0, max_value=5.0)
    config = SeriesConfig(
        expected_sources=expected,
        min_sources=draw(st.integers(min_value=1, max_value=max(1, len(expected)))),
        method=draw(st.sampled_from(["median", "priority", "trimmed_mean"])),
        priority=tuple(draw(st.lists(st.sampled_from(SOURCES), unique=True, max_size=4))),
        tolerance_bps=draw(st.sampled_from([0.0, 1.0, 50.0, 500.0])),
        staleness_seconds=draw(st.sampled_from([60, 300])),
        bounds=draw(st.none() | st.just((low, high))),
        max_jump_pct=draw(st.none() | st.floats(min_value=0.1, max_value=50.0)),
        precision=draw(st.none() | st.integers(min_value=0, max_value=12)),
        quality_policy=QualityPolicy(
            formula=draw(st.sampled_from(["product", "weighted_mean"])),
            weights=QualityWeights(
                completeness=draw(weights),
                timeliness=draw(weights),
                consistency=draw(weights),
                validity=draw(weights) + 0.1,  # keeps weighted_mean's total positive
            ),
            threshold=draw(st.floats(min_value=0.0, max_value=1.0)),
        ),
    )
    assert validate_series_config(config) == []
    return config


previous_values = st.none() | st.floats(min_value=-1e6, max_value=1e6)


@given(configs(), observation_sets(), st.randoms(use_true_random=False), previous_values)
def test_the_result_does_not_depend_on_the_input_order(
    config: SeriesConfig,
    observations: list[Observation],
    rng: random.Random,
    previous: float | None,
) -> None:
    shuffled = list(observations)
    rng.shuffle(shuffled)

    assert reconcile(config, SNAP, shuffled, previous_value=previous) == reconcile(
        config, SNAP, observations, previous_value=previous
    )


@given(configs(), observation_sets(), previous_values)
def test_reconciling_the_same_inputs_again_creates_no_new_version(
    config: SeriesConfig, observations: list[Observation], previous: float | None
) -> None:
    first = reconcile(config, SNAP, observations, previous_value=previous)
    decision = decide_version(
        first,
        None,
        all_expected_reported=all_expected_reported(config, first),
        window_closed=True,
    )
    if not decision.publish:
        assert first.status == "insufficient"
        return
    latest = official_value(SERIES, SNAP, first, decision, recorded_at=SNAP)

    again = reconcile(config, SNAP, list(reversed(observations)), previous_value=previous)
    repeat = decide_version(again, latest, all_expected_reported=True, window_closed=True)

    assert not repeat.publish
    assert repeat.reason == "unchanged"


@given(configs(), observation_sets(), previous_values)
def test_the_value_lies_within_the_used_values(
    config: SeriesConfig, observations: list[Observation], previous: float | None
) -> None:
    result = reconcile(config, SNAP, observations, previous_value=previous)
    if result.value is None:
        return
    used = [o.value for o in observations if o.observation_id in result.observation_ids]
    low, high = as_decimal(min(used)), as_decimal(max(used))
    if config.precision is not None:
        # Rounding is monotone, so it maps [min, max] onto [round(min), round(max)].
        low, high = round_half_up(low, config.precision), round_half_up(high, config.precision)

    assert to_float(low) <= result.value <= to_float(high)


@given(configs(), observation_sets(), previous_values)
def test_quality_is_in_unit_range_and_status_follows_score_and_sources(
    config: SeriesConfig, observations: list[Observation], previous: float | None
) -> None:
    result = reconcile(config, SNAP, observations, previous_value=previous)
    quality = result.quality

    for dimension in (
        quality.score,
        quality.completeness,
        quality.timeliness,
        quality.consistency,
        quality.validity,
    ):
        assert 0.0 <= dimension <= 1.0
    if len(result.sources_used) < config.min_sources:
        assert (result.status, result.value) == ("insufficient", None)
    else:
        assert result.value is not None
        expected_status = (
            "suspect" if quality.score < config.quality_policy.threshold else "official"
        )
        assert result.status == expected_status


@given(configs(), observation_sets())
def test_every_reporting_source_is_either_used_or_excluded_once(
    config: SeriesConfig, observations: list[Observation]
) -> None:
    result = reconcile(config, SNAP, observations, previous_value=None)
    excluded = [e.source for e in result.sources_excluded]

    assert set(result.sources_used).isdisjoint(excluded)
    assert sorted([*result.sources_used, *excluded]) == sorted({o.source for o in observations})
    assert list(result.sources_used) == sorted(result.sources_used)
    assert excluded == sorted(excluded)
    assert len(result.observation_ids) == len(result.sources_used)
