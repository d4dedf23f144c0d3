"""Micro-benchmarks of the pure domain hot path: one snap of 5 sources, as the worker sees it.

Run: `.venv/bin/pytest benchmarks/micro/test_domain.py --benchmark-only`
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.domain.observation import Observation, derive_observation_id
from app.domain.quality import assess_quality
from app.domain.reconciliation import reconcile
from app.domain.series import Method, SeriesConfig

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
SOURCES = ("binance", "bitstamp", "coinbase", "kraken", "okx")
# One outlier (okx) and one late source (kraken), so every step of the path does work.
VALUES = (3301.25, 3301.5, 3300.75, 3301.0, 3340.0)
CONFIG = SeriesConfig(expected_sources=SOURCES, min_sources=3, max_jump_pct=5.0, precision=2)


def five_sources() -> list[Observation]:
    return [
        Observation(
            observation_id=f"{source}-1",
            reference_data_id="ETH-USD",
            source=source,
            snap=SNAP,
            value=value,
            observed_at=SNAP + timedelta(milliseconds=120),
            received_at=SNAP + timedelta(seconds=90 if source == "kraken" else 1),
        )
        for source, value in zip(SOURCES, VALUES, strict=True)
    ]


@pytest.mark.benchmark(group="reconciliation")
@pytest.mark.parametrize("method", ["median", "trimmed_mean"])
def test_reconcile_a_snap_of_5_sources(benchmark: Any, method: Method) -> None:
    config = SeriesConfig(
        expected_sources=CONFIG.expected_sources,
        min_sources=CONFIG.min_sources,
        method=method,
        max_jump_pct=CONFIG.max_jump_pct,
        precision=CONFIG.precision,
    )
    observations = five_sources()

    result = benchmark(reconcile, config, SNAP, observations, previous_value=3300.0)

    assert result.sources_excluded[0].source == "okx"
    assert result.value == 3301.13  # both: mean of 3301.0 and 3301.25, half up


@pytest.mark.benchmark(group="quality")
def test_assess_quality_of_a_snap_of_5_sources(benchmark: Any) -> None:
    observations = five_sources()

    quality = benchmark(
        assess_quality,
        CONFIG,
        SNAP,
        reporting_sources=frozenset(SOURCES),
        used=observations[:4],
        value=3301.13,
        previous_value=3300.0,
    )

    assert quality.timeliness == 0.75
    assert quality.consistency == 0.8


@pytest.mark.benchmark(group="id-derivation")
def test_derive_observation_id(benchmark: Any) -> None:
    observed_at = SNAP + timedelta(milliseconds=120)

    observation_id = benchmark(
        derive_observation_id,
        "ETH-USD",
        "kraken",
        SNAP,
        3301.25,
        observed_at,
        {"bid": 3301.0, "ask": 3301.5},
    )

    assert observation_id.startswith("h:")
