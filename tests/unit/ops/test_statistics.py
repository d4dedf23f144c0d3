"""CloudWatch statistics per period from EMF samples."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ops.alarm import AlarmDefinitionError, parse_statistic, percentile_of
from ops.emf import Sample
from ops.statistics import aggregate, is_low_sample, low_sample_bound, percentile


def histogram(at_ms: int, values: list[float], counts: list[float]) -> Sample:
    total = sum(v * c for v, c in zip(values, counts, strict=True))
    return Sample(at_ms, tuple(values), tuple(counts), sum(counts), total, min(values), max(values))


def test_percentiles_parse_exactly() -> None:
    assert percentile_of("p95") == Fraction(19, 20)
    assert percentile_of("p99.9") == Fraction(999, 1000)
    assert percentile_of("p0") is None
    assert percentile_of("p100") is None
    assert parse_statistic("Average") == "Average"
    with pytest.raises(AlarmDefinitionError):
        parse_statistic("tm90")


@pytest.mark.parametrize(
    ("stat", "bound"), [("p95", 200), ("p99", 1000), ("p50", 20), ("p25", 40), ("p10", 100)]
)
def test_low_sample_bound_is_exact(stat: str, bound: int) -> None:
    fraction = percentile_of(stat)
    assert fraction is not None
    assert low_sample_bound(fraction) == bound
    assert is_low_sample(bound - 1, fraction)
    assert not is_low_sample(bound, fraction)


def test_nearest_rank_without_interpolation() -> None:
    values, counts = (10.0, 20.0, 300.0), (180.0, 10.0, 10.0)
    assert percentile(values, counts, Fraction(95, 100)) == 20.0
    assert percentile(values, counts, Fraction(96, 100)) == 300.0
    assert percentile(values, counts, Fraction(1, 2)) == 10.0


def test_periods_are_aligned_to_the_epoch_and_records_merge() -> None:
    base = 1_764_234_000  # 09:00:00Z
    samples = [
        histogram((base + 17) * 1000, [10.0], [100.0]),
        histogram((base + 77) * 1000, [300.0], [100.0]),
        histogram((base + 317) * 1000, [5.0], [1.0]),
    ]
    periods = aggregate(samples, 300)
    assert list(periods) == [base, base + 300]
    first = periods[base]
    assert first.sample_count == 200
    assert first.value("Sum") == 10 * 100 + 300 * 100
    assert first.value("Average") == pytest.approx(155.0)
    assert (first.value("Minimum"), first.value("Maximum")) == (10.0, 300.0)
    assert first.value("p95") == 300.0
    assert first.value("p50") == 10.0
    assert first.value("SampleCount") == 200


def test_the_seeds_average_of_p95s_hides_what_p95_sees() -> None:
    """One busy slow minute and four quiet fast ones: the seed's statistic says 96 ms."""
    base = 1_764_234_000
    minutes = [
        histogram(base * 1000, [20.0, 400.0], [900.0, 100.0]),
        *(histogram((base + 60 * i) * 1000, [20.0], [10.0]) for i in range(1, 5)),
    ]
    per_minute_p95 = [aggregate([m], 60)[m.timestamp_ms // 1000].value("p95") for m in minutes]
    seed_statistic = sum(per_minute_p95) / len(per_minute_p95)
    assert seed_statistic == pytest.approx(96.0)
    assert aggregate(minutes, 300)[base].value("p95") == 400.0


@given(
    st.lists(
        st.tuples(st.floats(0, 1e6, allow_nan=False), st.integers(1, 1000)), min_size=1, max_size=30
    ),
    st.integers(1, 99),
)
def test_percentile_is_a_reported_value_and_monotonic(
    pairs: list[tuple[float, int]], p: int
) -> None:
    merged: dict[float, float] = {}
    for value, count in pairs:
        merged[value] = merged.get(value, 0.0) + count
    values = tuple(sorted(merged))
    counts = tuple(merged[v] for v in values)
    low = percentile(values, counts, Fraction(p, 100))
    high = percentile(values, counts, Fraction(min(p + 1, 99), 100))
    assert low in values
    assert low <= high
    expanded = sorted(v for v, c in zip(values, counts, strict=True) for _ in range(int(c)))
    rank = -(-p * len(expanded) // 100)  # ceil(p/100 * n)
    assert low == expanded[rank - 1]
