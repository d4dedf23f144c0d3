"""Plain-value builders for domain tests: one snap, sources reporting on time by default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.domain.observation import Observation

SERIES = "ETH-USD"
SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)


def observation(
    source: str,
    value: float,
    *,
    observed_after: float = 0.0,
    received_after: float = 1.0,
    observation_id: str | None = None,
    snap: datetime = SNAP,
) -> Observation:
    """An observation `observed_after` / `received_after` seconds after the snap."""
    observed_at = snap + timedelta(seconds=observed_after)
    return Observation(
        observation_id=observation_id or f"{source}@{observed_after}:{value!r}",
        reference_data_id=SERIES,
        source=source,
        snap=snap,
        value=value,
        observed_at=observed_at,
        received_at=snap + timedelta(seconds=received_after),
    )
