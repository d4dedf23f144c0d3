"""Ingestion use case: assign ids, group by series, append to the ingestion log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from app.domain.observation import (
    MAX_OBSERVATIONS_PER_RECORD,
    OBSERVATIONS_SCHEMA_VERSION,
    Observation,
    ObservationsRecorded,
    SubmittedObservation,
    derive_observation_id,
)
from app.ports import IngestionLog


class IngestResult:
    """What the client is told once the log acknowledged."""

    __slots__ = ("accepted", "duplicates", "observation_ids")

    def __init__(self, observation_ids: list[str], duplicates: int) -> None:
        self.observation_ids = observation_ids
        self.accepted = len(observation_ids)
        self.duplicates = duplicates


def to_records(
    items: Sequence[SubmittedObservation], received_at: datetime
) -> tuple[list[ObservationsRecorded], list[str], int]:
    """Observations grouped by series, ids in request order, and in-request duplicates."""
    by_series: dict[str, list[Observation]] = {}
    ids: list[str] = []
    # The store's key: an id is unique within its series and snap (a derived id covers
    # both; a client's key names one observation of one series and snap).
    seen: set[tuple[str, datetime, str]] = set()
    for item in items:
        observation_id = item.observation_id or derive_observation_id(
            item.reference_data_id,
            item.source,
            item.snap,
            item.value,
            item.observed_at,
            item.attributes,
        )
        ids.append(observation_id)
        key = (item.reference_data_id, item.snap, observation_id)
        if key in seen:
            continue  # a duplicate within the request is stored once: the first wins
        seen.add(key)
        by_series.setdefault(item.reference_data_id, []).append(
            Observation(
                observation_id=observation_id,
                reference_data_id=item.reference_data_id,
                source=item.source,
                snap=item.snap,
                value=item.value,
                observed_at=item.observed_at,
                received_at=received_at,
                attributes=item.attributes,
            )
        )
    records = [
        ObservationsRecorded(
            schema_version=OBSERVATIONS_SCHEMA_VERSION,
            reference_data_id=series_id,
            observations=observations[start : start + MAX_OBSERVATIONS_PER_RECORD],
        )
        for series_id, observations in by_series.items()
        for start in range(0, len(observations), MAX_OBSERVATIONS_PER_RECORD)
    ]
    return records, ids, len(ids) - len(seen)


async def ingest(
    items: Sequence[SubmittedObservation],
    log: IngestionLog,
    received_at: datetime,
    actor: str | None = None,
) -> IngestResult:
    """Make the observations durable; raises IngestionLogUnavailable when the log did not ack.

    `actor`: who submitted them (the token's client), the audit actor of what they change.
    """
    records, ids, duplicates = to_records(items, received_at)
    await log.append(records, actor)
    return IngestResult(ids, duplicates)
