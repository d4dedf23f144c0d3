"""Reconciliation: the official value of one (series, snap) from its sources' observations.

Decisions beyond docs/domain.md, each pinned by a unit test:

- Current observation of a source: latest `observed_at`, then latest `received_at`, then
  the greatest `observation_id`, so the choice never depends on the input order.
- Outliers are measured against the median of *all* sources still in after the `invalid`
  and `stale` exclusions, the candidate included, in one pass. With 3 sources that is
  the middle one, so A=100, B=100.01, C=103 excludes only C (worked example 3); judged
  against "the others" A would be 150 bps from median(B, C) and excluded too. With 2 or
  fewer sources nothing is an outlier (there is no majority to side with).
- The distance is compared as |value - median| x 10 000 > tolerance_bps x |median|, so a
  value exactly on the tolerance is kept. When the median is 0 every non-zero value is
  infinitely many bps away and is an outlier: relative tolerances do not suit series
  that cross zero.
- An even number of sources split into two far-apart camps (100, 100, 200, 200) has a
  median that no source is near; all are outliers and the status is `insufficient`:
  there is no consensus to publish.
- Arithmetic is on the decimals the values print as (`decimal_values`), so the median of
  100.00 and 100.02 is 100.01, not 100.00999999999999, and means are order independent.
- Rounding to `precision` is ROUND_HALF_UP on that decimal, i.e. what a person expects:
  100.005 -> 100.01 and 2.675 -> 2.68 at 2 places (Python's `round` gives 100.0 and 2.67
  because of the binary representation). Ties go away from zero: -2.5 -> -3.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import msgspec

from app.domain.decimal_values import (
    as_decimal,
    decimal_mean,
    decimal_median,
    relative_distance_exceeds,
    round_half_up,
    to_float,
)
from app.domain.observation import Observation
from app.domain.quality import Quality, assess_quality, quality_status
from app.domain.series import Method, SeriesConfig, stale_before

ExclusionReason = Literal["invalid", "stale", "outlier"]
ReconciliationStatus = Literal["official", "suspect", "insufficient"]

_BPS = 10_000


class Exclusion(msgspec.Struct, frozen=True, kw_only=True, order=True):
    """A source left out of the official value, and why."""

    source: str
    reason: ExclusionReason


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of reconciling one snap; `value` is None exactly when `insufficient`.

    `observation_ids` are the ids of the observations used, in `sources_used` order,
    for lineage.
    """

    value: float | None
    status: ReconciliationStatus
    method: Method
    sources_used: tuple[str, ...]
    sources_excluded: tuple[Exclusion, ...]
    quality: Quality
    observation_ids: tuple[str, ...]

    @property
    def sources_reporting(self) -> frozenset[str]:
        """Every source that had an observation for the snap, used or excluded."""
        return frozenset(self.sources_used).union(e.source for e in self.sources_excluded)


def reconcile(
    config: SeriesConfig,
    snap: datetime,
    observations: Iterable[Observation],
    *,
    previous_value: float | None,
) -> Reconciliation:
    """Reconcile the observations of one snap into a value, its status and its quality.

    `previous_value` is the official value of the previous snap, for spike detection.
    Raises ValueError when an observation belongs to another snap.
    """
    current = current_observations(observations, snap)
    excluded: list[Exclusion] = []
    remaining: list[Observation] = []
    oldest_fresh = stale_before(config, snap)
    for observation in current:
        if not within_bounds(observation.value, config.bounds):
            excluded.append(Exclusion(source=observation.source, reason="invalid"))
        elif observation.observed_at < oldest_fresh:
            excluded.append(Exclusion(source=observation.source, reason="stale"))
        else:
            remaining.append(observation)

    used: list[Observation] = []
    if len(remaining) > 2:
        decimals = [as_decimal(o.value) for o in remaining]
        reference = decimal_median(sorted(decimals))
        for observation, exact in zip(remaining, decimals, strict=True):
            if relative_distance_exceeds(exact, reference, config.tolerance_bps, _BPS):
                excluded.append(Exclusion(source=observation.source, reason="outlier"))
            else:
                used.append(observation)
    else:
        used = remaining

    # `current` is sorted by source, so `used` is too.
    value = combine(config, used) if used and len(used) >= config.min_sources else None
    quality = assess_quality(
        config,
        snap,
        reporting_sources=frozenset(o.source for o in current),
        used=used,
        value=value,
        previous_value=previous_value,
    )
    status: ReconciliationStatus = (
        "insufficient" if value is None else quality_status(config.quality_policy, quality)
    )
    return Reconciliation(
        value=value,
        status=status,
        method=config.method,
        sources_used=tuple(o.source for o in used),
        sources_excluded=tuple(sorted(excluded)),
        quality=quality,
        observation_ids=tuple(o.observation_id for o in used),
    )


def current_observations(observations: Iterable[Observation], snap: datetime) -> list[Observation]:
    """The observation that counts for each source, sorted by source.

    A source may correct itself: the latest `observed_at` wins, then the latest
    `received_at`, then the greatest `observation_id` (only so the choice is deterministic).
    """
    latest: dict[str, Observation] = {}
    for observation in observations:
        if observation.snap != snap:
            raise ValueError(
                f"observation {observation.observation_id!r} is for snap "
                f"{observation.snap.isoformat()}, not {snap.isoformat()}"
            )
        held = latest.get(observation.source)
        if held is None or _recency(observation) > _recency(held):
            latest[observation.source] = observation
    return [latest[source] for source in sorted(latest)]


def all_expected_reported(config: SeriesConfig, result: Reconciliation) -> bool:
    """True when every expected source has an observation (vacuously true with none expected)."""
    reporting = result.sources_reporting
    return all(source in reporting for source in config.expected_sources)


def within_bounds(value: float, bounds: tuple[float | None, float | None] | None) -> bool:
    """True when `value` lies in the inclusive `[min, max]` range; a None side is open."""
    if bounds is None:
        return True
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def priority_rank(config: SeriesConfig, source: str) -> tuple[int, str]:
    """Sort key: listed sources in `priority` order, then unlisted ones by name."""
    try:
        return (config.priority.index(source), "")
    except ValueError:
        return (len(config.priority), source)


def combine(config: SeriesConfig, used: list[Observation]) -> float:
    """The series' method applied to the used observations, rounded to `precision`."""
    if config.method == "priority":
        chosen = min(used, key=lambda o: priority_rank(config, o.source))
        value = as_decimal(chosen.value)
    else:
        ordered = sorted(as_decimal(o.value) for o in used)
        if config.method == "median":
            value = decimal_median(ordered)
        else:
            # From 4 values only: trimming 3 would just give their median.
            value = decimal_mean(ordered[1:-1] if len(ordered) >= 4 else ordered)
    if config.precision is not None:
        value = round_half_up(value, config.precision)
    return to_float(value)


def _recency(observation: Observation) -> tuple[datetime, datetime, str]:
    return (observation.observed_at, observation.received_at, observation.observation_id)
