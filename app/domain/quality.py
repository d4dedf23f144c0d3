"""Quality of one reconciled value: four dimensions in [0, 1] and a score combining them.

The formula is the series' `QualityPolicy` (product by default, or weighted mean). The
score and the ratio dimensions are rounded to 4 decimals, and `suspect` compares the
rounded score, so a reader sees `score < threshold` exactly when the value is suspect.
With no source reporting, consistency is 0; with no observation used, timeliness is 0
(such a result is `insufficient` anyway).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Literal

import msgspec

from app.domain.decimal_values import as_decimal, relative_distance_exceeds
from app.domain.observation import Observation
from app.domain.series import QualityPolicy, SeriesConfig, window_closes_at

QualityStatus = Literal["official", "suspect"]

# Four decimals is what a reader of the score can act on; rounding also keeps the
# published score stable against float noise in the dimension ratios.
SCORE_DECIMALS = 4
SPIKE_VALIDITY = 0.5
_PERCENT = 100


class Quality(msgspec.Struct, frozen=True, kw_only=True):
    """Quality score and the dimensions it was computed from, each in [0, 1]."""

    score: float
    completeness: float
    timeliness: float
    consistency: float
    validity: float


def assess_quality(
    config: SeriesConfig,
    snap: datetime,
    *,
    reporting_sources: Collection[str],
    used: Sequence[Observation],
    value: float | None,
    previous_value: float | None,
) -> Quality:
    """Score the reconciled value of one snap (docs/domain.md, "Quality score").

    `reporting_sources` are all sources with an observation for the snap (used or
    excluded), `used` the observations the value was computed from, `previous_value` the
    official value of the previous snap (None when there is none).
    """
    completeness = _completeness(config, reporting_sources)
    consistency = len(used) / len(reporting_sources) if reporting_sources else 0.0
    deadline = window_closes_at(config, snap)
    on_time = sum(1 for observation in used if observation.received_at <= deadline)
    timeliness = on_time / len(used) if used else 0.0
    spike = (
        value is not None
        and previous_value is not None
        and config.max_jump_pct is not None
        and is_spike(value, previous_value, config.max_jump_pct)
    )
    validity = SPIKE_VALIDITY if spike else 1.0
    score = quality_score(
        config.quality_policy,
        completeness=completeness,
        timeliness=timeliness,
        consistency=consistency,
        validity=validity,
    )
    return Quality(
        score=score,
        completeness=round(completeness, SCORE_DECIMALS),
        timeliness=round(timeliness, SCORE_DECIMALS),
        consistency=round(consistency, SCORE_DECIMALS),
        validity=validity,
    )


def quality_score(
    policy: QualityPolicy,
    *,
    completeness: float,
    timeliness: float,
    consistency: float,
    validity: float,
) -> float:
    """Combine the dimensions with the policy's formula; clamped to [0, 1], 4 decimals."""
    weights = policy.weights
    pairs = (
        (completeness, weights.completeness),
        (timeliness, weights.timeliness),
        (consistency, weights.consistency),
        (validity, weights.validity),
    )
    if policy.formula == "product":
        # 0 ** 0 == 1: a dimension with weight 0 is left out even when it is 0.
        raw = math.prod(float(dimension**weight) for dimension, weight in pairs)
    else:
        total = math.fsum(weight for _, weight in pairs)
        raw = math.fsum(dimension * weight for dimension, weight in pairs) / total if total else 0.0
    return round(min(1.0, max(0.0, raw)), SCORE_DECIMALS)


def quality_status(policy: QualityPolicy, quality: Quality) -> QualityStatus:
    """`suspect` when the (published, rounded) score is below the policy's threshold."""
    return "suspect" if quality.score < policy.threshold else "official"


def is_spike(value: float, previous_value: float, max_jump_pct: float) -> bool:
    """True when `value` moved more than `max_jump_pct` percent from `previous_value`.

    Compared on the printed decimals as |value - previous| x 100 > max_jump_pct x
    |previous|, so a move of exactly `max_jump_pct` is not a spike and any move away from
    a previous value of 0 is one.
    """
    return relative_distance_exceeds(
        as_decimal(value), as_decimal(previous_value), max_jump_pct, _PERCENT
    )


def _completeness(config: SeriesConfig, reporting_sources: Collection[str]) -> float:
    if config.expected_sources:
        reported = sum(1 for source in config.expected_sources if source in reporting_sources)
        return reported / len(config.expected_sources)
    # With no expected sources, "complete" means enough sources to publish at all.
    return min(1.0, len(reporting_sources) / config.min_sources)
