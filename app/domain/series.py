"""Series (reference data) configuration: how the sources of one series are reconciled.

Every field has the default of docs/domain.md, so a series created implicitly by its first
observation behaves exactly like `SeriesConfig()`. The `msgspec.Meta` constraints are
enforced when a client's JSON is decoded; `validate_series_config` re-checks them (a
struct built in Python skips decoding) and adds the rules that span several fields.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec

from app.domain.bounds import TEXT_RULE, text_problem
from app.domain.errors import FieldError, InvalidSeriesConfig
from app.domain.observation import MAX_SOURCE_LENGTH, FiniteFloat

Method = Literal["median", "priority", "trimmed_mean"]
QualityFormula = Literal["product", "weighted_mean"]

MAX_SOURCES = 64
MAX_PRECISION = 12
MAX_WINDOW_SECONDS = 7 * 24 * 3600
MAX_STALENESS_SECONDS = 30 * 24 * 3600
MAX_TOLERANCE_BPS = 1_000_000.0
MAX_JUMP_PCT = 1_000_000.0
DEFAULT_QUALITY_THRESHOLD = 0.95

# Window and staleness are added to or subtracted from a snap: both stay within
# bounds.MAX_SHIFT (tests/unit/domain/test_bounds.py), so a snap inside the accepted range
# never leaves what datetime and PostgreSQL hold.
Weight = Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)]

# What `str.strip()` removes, as a JSON Schema character class: a configured source name
# neither starts nor ends with one ("kraken " would be a different source from "kraken").
_BLANK = (
    "\\t\\n\\u000b\\u000c\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
CONFIGURED_SOURCE_PATTERN = f"^[^{_BLANK}\\u0000]([^\\u0000]*[^{_BLANK}\\u0000])?$"
"""A configured source name: no NUL, no surrounding blanks (Python's `re` reads it too)."""
ConfiguredSource = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_SOURCE_LENGTH,
        description=f"source name: 1 to {MAX_SOURCE_LENGTH} characters, no surrounding blanks, "
        f"{TEXT_RULE}",
        extra_json_schema={"pattern": CONFIGURED_SOURCE_PATTERN},
    ),
]
ConfiguredSources = Annotated[
    tuple[ConfiguredSource, ...],
    msgspec.Meta(max_length=MAX_SOURCES, extra_json_schema={"uniqueItems": True}),
]
"""Distinct source names (the decoder checks length; `validate_series_config` the rest)."""


class QualityWeights(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Weight of each quality dimension in the score; 0 leaves a dimension out."""

    completeness: Weight = 1.0
    timeliness: Weight = 1.0
    consistency: Weight = 1.0
    validity: Weight = 1.0


class QualityPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the quality dimensions combine into a score, and where `suspect` starts.

    `product`: score = prod(dimension ** weight), so with the default weights of 1 it is
    completeness x timeliness x consistency x validity, and any weak dimension drags the
    score down. `weighted_mean`: score = sum(weight x dimension) / sum(weight), which is
    more forgiving. A published value whose score is below `threshold` is `suspect`.
    """

    formula: QualityFormula = "product"
    weights: QualityWeights = msgspec.field(default_factory=QualityWeights)
    threshold: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = DEFAULT_QUALITY_THRESHOLD


class SeriesConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Reconciliation, quality and publication rules of one series (see docs/domain.md)."""

    expected_sources: ConfiguredSources = ()
    min_sources: Annotated[int, msgspec.Meta(ge=1, le=MAX_SOURCES)] = 1
    method: Method = "median"
    priority: ConfiguredSources = ()
    tolerance_bps: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_TOLERANCE_BPS)] = 50.0
    window_seconds: Annotated[int, msgspec.Meta(gt=0, le=MAX_WINDOW_SECONDS)] = 60
    staleness_seconds: Annotated[int, msgspec.Meta(gt=0, le=MAX_STALENESS_SECONDS)] = 300
    bounds: tuple[FiniteFloat | None, FiniteFloat | None] | None = None
    # The upper bound is checked by `validate_series_config`, not while decoding, so a
    # configuration stored before the bound existed still reads back.
    max_jump_pct: (
        Annotated[float, msgspec.Meta(gt=0.0, extra_json_schema={"maximum": MAX_JUMP_PCT})] | None
    ) = None
    precision: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRECISION)] | None = None
    quality_policy: QualityPolicy = msgspec.field(default_factory=QualityPolicy)


class Series(msgspec.Struct, frozen=True, kw_only=True):
    """A configured series; the id stays outside the config so a PUT body is just the config."""

    reference_data_id: str
    config: SeriesConfig
    updated_at: datetime


def window_closes_at(config: SeriesConfig, snap: datetime) -> datetime:
    """End of the collection window: observations received later count as late."""
    return snap + timedelta(seconds=config.window_seconds)


def is_window_closed(config: SeriesConfig, snap: datetime, now: datetime) -> bool:
    """True once `now` has reached the end of the snap's collection window."""
    return now >= window_closes_at(config, snap)


def stale_before(config: SeriesConfig, snap: datetime) -> datetime:
    """Observations made before this instant are stale for the snap."""
    return snap - timedelta(seconds=config.staleness_seconds)


def validate_series_config(config: SeriesConfig) -> list[FieldError]:
    """Every rule the configuration breaks, empty when it is valid."""
    errors: list[FieldError] = []
    errors += _source_list_errors("expected_sources", config.expected_sources)
    errors += _source_list_errors("priority", config.priority)

    if not 1 <= config.min_sources <= MAX_SOURCES:
        errors.append(FieldError(loc=("min_sources",), msg=f"must be between 1 and {MAX_SOURCES}"))
    elif config.expected_sources and config.min_sources > len(config.expected_sources):
        errors.append(
            FieldError(
                loc=("min_sources",),
                msg="must not exceed the number of expected_sources "
                f"({len(config.expected_sources)})",
            )
        )

    if not (math.isfinite(config.tolerance_bps) and 0 <= config.tolerance_bps <= MAX_TOLERANCE_BPS):
        errors.append(
            FieldError(loc=("tolerance_bps",), msg=f"must be between 0 and {MAX_TOLERANCE_BPS:g}")
        )
    if not 0 < config.window_seconds <= MAX_WINDOW_SECONDS:
        errors.append(
            FieldError(loc=("window_seconds",), msg=f"must be between 1 and {MAX_WINDOW_SECONDS}")
        )
    if not 0 < config.staleness_seconds <= MAX_STALENESS_SECONDS:
        errors.append(
            FieldError(
                loc=("staleness_seconds",), msg=f"must be between 1 and {MAX_STALENESS_SECONDS}"
            )
        )
    errors += _bounds_errors(config.bounds)
    if config.max_jump_pct is not None and not 0 < config.max_jump_pct <= MAX_JUMP_PCT:
        errors.append(
            FieldError(loc=("max_jump_pct",), msg=f"must be above 0 and at most {MAX_JUMP_PCT:g}")
        )
    if config.precision is not None and not 0 <= config.precision <= MAX_PRECISION:
        errors.append(FieldError(loc=("precision",), msg=f"must be between 0 and {MAX_PRECISION}"))
    errors += _quality_policy_errors(config.quality_policy)
    return errors


def ensure_valid_series_config(config: SeriesConfig) -> SeriesConfig:
    """Return the configuration unchanged, or raise `InvalidSeriesConfig` listing every error."""
    errors = validate_series_config(config)
    if errors:
        raise InvalidSeriesConfig(errors)
    return config


def _source_list_errors(field: str, sources: tuple[str, ...]) -> list[FieldError]:
    errors: list[FieldError] = []
    if len(sources) > MAX_SOURCES:
        errors.append(FieldError(loc=(field,), msg=f"at most {MAX_SOURCES} sources"))
    seen: set[str] = set()
    for index, source in enumerate(sources):
        # Surrounding blanks would make "kraken " a different source from "kraken".
        problem = text_problem(source)
        if problem:
            errors.append(FieldError(loc=(field, index), msg=problem))
        elif not source or len(source) > MAX_SOURCE_LENGTH or source != source.strip():
            errors.append(
                FieldError(
                    loc=(field, index),
                    msg=f"source names are 1 to {MAX_SOURCE_LENGTH} characters, "
                    "without surrounding blanks",
                )
            )
        elif source in seen:
            errors.append(FieldError(loc=(field, index), msg=f"duplicate source {source!r}"))
        seen.add(source)
    return errors


def _bounds_errors(bounds: tuple[float | None, float | None] | None) -> list[FieldError]:
    if bounds is None:
        return []
    errors = [
        FieldError(loc=("bounds", side), msg="must be a finite number or null")
        for side, limit in enumerate(bounds)
        if limit is not None and not math.isfinite(limit)
    ]
    low, high = bounds
    if not errors and low is not None and high is not None and low > high:
        errors.append(FieldError(loc=("bounds",), msg="min must not be greater than max"))
    return errors


def _quality_policy_errors(policy: QualityPolicy) -> list[FieldError]:
    errors: list[FieldError] = []
    weights = msgspec.structs.asdict(policy.weights)
    for name, weight in weights.items():
        if not (math.isfinite(weight) and 0 <= weight <= 1000):
            errors.append(
                FieldError(
                    loc=("quality_policy", "weights", name), msg="must be between 0 and 1000"
                )
            )
    if not errors and policy.formula == "weighted_mean" and sum(weights.values()) == 0:
        errors.append(
            FieldError(
                loc=("quality_policy", "weights"),
                msg="weighted_mean needs at least one positive weight",
            )
        )
    if not (math.isfinite(policy.threshold) and 0 <= policy.threshold <= 1):
        errors.append(
            FieldError(loc=("quality_policy", "threshold"), msg="must be between 0 and 1")
        )
    return errors
