from __future__ import annotations

import math
import re
from datetime import timedelta

import msgspec
import pytest

from app.domain.bounds import is_valid_series_id
from app.domain.errors import FieldError, InvalidSeriesConfig
from app.domain.series import (
    QualityPolicy,
    QualityWeights,
    SeriesConfig,
    ensure_valid_series_config,
    is_window_closed,
    stale_before,
    validate_series_config,
    window_closes_at,
)

from .builders import SNAP


def decode(body: bytes) -> SeriesConfig:
    return msgspec.json.decode(body, type=SeriesConfig)


def locs(config: SeriesConfig) -> list[tuple[str | int, ...]]:
    return [error.loc for error in validate_series_config(config)]


def test_defaults_are_those_of_domain_md() -> None:
    assert msgspec.json.decode(msgspec.json.encode(SeriesConfig())) == {
        "expected_sources": [],
        "min_sources": 1,
        "method": "median",
        "priority": [],
        "tolerance_bps": 50.0,
        "window_seconds": 60,
        "staleness_seconds": 300,
        "bounds": None,
        "max_jump_pct": None,
        "precision": None,
        "quality_policy": {
            "formula": "product",
            "weights": {
                "completeness": 1.0,
                "timeliness": 1.0,
                "consistency": 1.0,
                "validity": 1.0,
            },
            "threshold": 0.95,
        },
    }
    assert validate_series_config(SeriesConfig()) == []


def test_an_empty_body_decodes_to_the_defaults() -> None:
    assert decode(b"{}") == SeriesConfig()


def test_bounds_decode_from_a_json_pair_with_optional_sides() -> None:
    assert decode(b'{"bounds": [null, 5]}').bounds == (None, 5.0)
    assert decode(b'{"bounds": [1.5, null]}').bounds == (1.5, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"min_sources": 0}', "Expected `int` >= 1 - at `$.min_sources`"),
        (b'{"method": "mean"}', "Invalid enum value 'mean' - at `$.method`"),
        (b'{"precision": 13}', "Expected `int` <= 12 - at `$.precision`"),
        (b'{"window_seconds": 0}', "Expected `int` >= 1 - at `$.window_seconds`"),
        (b'{"expected_sources": [""]}', "Expected `str` of length >= 1"),
        (b'{"bounds": [1]}', "Expected `array` of length 2"),
        (b'{"tolerance": 5}', "Object contains unknown field `tolerance`"),
        (b'{"quality_policy": {"weight": {}}}', "unknown field `weight`"),
        (b'{"quality_policy": {"threshold": 1.5}}', "Expected `float` <= 1.0"),
    ],
)
def test_decoding_rejects_values_out_of_range_and_unknown_fields(body: bytes, message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(message)):
        decode(body)


def test_min_sources_may_not_exceed_the_expected_sources() -> None:
    config = SeriesConfig(expected_sources=("A", "B"), min_sources=3)

    assert validate_series_config(config) == [
        FieldError(loc=("min_sources",), msg="must not exceed the number of expected_sources (2)")
    ]
    assert validate_series_config(SeriesConfig(expected_sources=("A", "B"), min_sources=2)) == []
    assert validate_series_config(SeriesConfig(min_sources=5)) == []  # none expected


def test_bounds_min_must_not_exceed_max() -> None:
    assert locs(SeriesConfig(bounds=(2.0, 1.0))) == [("bounds",)]
    assert locs(SeriesConfig(bounds=(1.0, 1.0))) == []


def test_bounds_must_be_finite() -> None:
    assert locs(SeriesConfig(bounds=(math.nan, math.inf))) == [("bounds", 0), ("bounds", 1)]


def test_source_names_must_be_unique_and_well_formed_with_their_index() -> None:
    config = SeriesConfig(
        expected_sources=("A", "B", "A"), priority=(" kraken", "x" * 65, "ok", "ok")
    )

    assert locs(config) == [
        ("expected_sources", 2),
        ("priority", 0),
        ("priority", 1),
        ("priority", 3),
    ]


def test_every_scalar_rule_is_checked_for_structs_built_in_python() -> None:
    config = SeriesConfig(
        min_sources=0,
        tolerance_bps=-1,
        window_seconds=0,
        staleness_seconds=-5,
        max_jump_pct=0.0,
        precision=13,
        quality_policy=QualityPolicy(
            threshold=1.2, weights=QualityWeights(validity=-1.0, timeliness=math.nan)
        ),
    )

    assert locs(config) == [
        ("min_sources",),
        ("tolerance_bps",),
        ("window_seconds",),
        ("staleness_seconds",),
        ("max_jump_pct",),
        ("precision",),
        ("quality_policy", "weights", "timeliness"),
        ("quality_policy", "weights", "validity"),
        ("quality_policy", "threshold"),
    ]


def test_weighted_mean_needs_a_positive_weight() -> None:
    zero = QualityWeights(completeness=0, timeliness=0, consistency=0, validity=0)

    assert locs(
        SeriesConfig(quality_policy=QualityPolicy(formula="weighted_mean", weights=zero))
    ) == [("quality_policy", "weights")]
    assert locs(SeriesConfig(quality_policy=QualityPolicy(weights=zero))) == []


def test_ensure_valid_raises_with_every_error() -> None:
    config = SeriesConfig(precision=-1, bounds=(3.0, 1.0))

    with pytest.raises(InvalidSeriesConfig) as raised:
        ensure_valid_series_config(config)

    assert [e.loc for e in raised.value.errors] == [("bounds",), ("precision",)]
    assert "precision: must be between 0 and 12" in str(raised.value)
    assert ensure_valid_series_config(SeriesConfig()) == SeriesConfig()


def test_field_errors_encode_as_loc_and_msg() -> None:
    error = FieldError(loc=("priority", 3), msg="duplicate source 'ok'")

    assert msgspec.json.encode(error) == b'{"loc":["priority",3],"msg":"duplicate source \'ok\'"}'


@pytest.mark.parametrize(
    ("reference_data_id", "valid"),
    [
        ("ETH-USD", True),
        ("EURUSD", True),
        ("SPX", True),
        ("US10Y:CMT.1", True),
        ("eth-usd", False),
        ("-ETH", False),
        ("", False),
        ("A" * 65, False),
        ("ETH USD", False),
    ],
)
def test_series_ids(reference_data_id: str, valid: bool) -> None:
    assert is_valid_series_id(reference_data_id) is valid


def test_window_and_staleness_instants() -> None:
    config = SeriesConfig(window_seconds=60, staleness_seconds=300)
    closes = SNAP + timedelta(seconds=60)

    assert window_closes_at(config, SNAP) == closes
    assert stale_before(config, SNAP) == SNAP - timedelta(seconds=300)
    assert not is_window_closed(config, SNAP, closes - timedelta(microseconds=1))
    assert is_window_closed(config, SNAP, closes)
