"""CloudWatch statistics of one series per period: SampleCount, Sum, Average, Min, Max, pNN.

Periods are aligned to multiples of the period since the epoch (05:00, 05:05, ... for
300 s), and a record belongs to the period holding its timestamp. Distributions from all
records of a period are merged (same value -> counts added) before percentiles are taken.

Percentile rule (nearest rank, no interpolation): pNN is the smallest reported value
whose cumulative count reaches NN % of the period's total count. It always returns a value
that was reported - with the services' EMF exporter, an exponential-histogram bucket midpoint, so
the answer carries the bucket's relative error (well under 1 % at the exporter's scales).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from fractions import Fraction

import msgspec

from ops.alarm import parse_statistic
from ops.emf import Sample


class PeriodStatistics(msgspec.Struct, frozen=True):
    """One series over one period: the summary statistics and the merged distribution."""

    start: int
    sample_count: float
    total: float
    minimum: float
    maximum: float
    values: tuple[float, ...]
    counts: tuple[float, ...]

    def value(self, stat: str) -> float:
        """The statistic `stat` (`Sum`, `Average`, `p95`, ...) of this period."""
        parsed = parse_statistic(stat)
        if isinstance(parsed, Fraction):
            return percentile(self.values, self.counts, parsed)
        match parsed:
            case "SampleCount":
                return self.sample_count
            case "Sum":
                return self.total
            case "Average":
                return self.total / self.sample_count
            case "Minimum":
                return self.minimum
            case "Maximum":
                return self.maximum


def period_start(timestamp_ms: int, period: int) -> int:
    """The epoch second at which the period holding `timestamp_ms` starts."""
    seconds = timestamp_ms // 1000
    return seconds - seconds % period


def aggregate(samples: Iterable[Sample], period: int) -> dict[int, PeriodStatistics]:
    """Per-period statistics keyed by period start (epoch seconds); empty periods absent."""
    grouped: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[period_start(sample.timestamp_ms, period)].append(sample)
    return {start: _merge(start, group) for start, group in sorted(grouped.items())}


def _merge(start: int, samples: list[Sample]) -> PeriodStatistics:
    distribution: dict[float, float] = defaultdict(float)
    for sample in samples:
        for value, count in zip(sample.values, sample.counts, strict=True):
            distribution[value] += count
    ordered = sorted(distribution.items())
    return PeriodStatistics(
        start=start,
        sample_count=sum(s.sample_count for s in samples),
        total=sum(s.total for s in samples),
        minimum=min(s.minimum for s in samples),
        maximum=max(s.maximum for s in samples),
        values=tuple(v for v, _ in ordered),
        counts=tuple(c for _, c in ordered),
    )


def percentile(values: tuple[float, ...], counts: tuple[float, ...], fraction: Fraction) -> float:
    """Nearest-rank percentile of value/count pairs sorted by value (see the module doc)."""
    if not values:
        raise ValueError("percentile of an empty distribution")
    rank = Fraction(sum(counts)) * fraction
    cumulative = Fraction(0)
    for value, count in zip(values, counts, strict=True):
        cumulative += Fraction(count)
        if cumulative >= rank:
            return value
    return values[-1]


def low_sample_bound(fraction: Fraction) -> Fraction:
    """Fewest samples for a statistically significant percentile: 10/(1-p), or 10/p below p50."""
    return 10 / (1 - fraction) if fraction >= Fraction(1, 2) else 10 / fraction


def is_low_sample(sample_count: float, fraction: Fraction) -> bool:
    """True when CloudWatch's EvaluateLowSampleCountPercentile rule would apply (p95: < 200)."""
    return Fraction(sample_count) < low_sample_bound(fraction)
