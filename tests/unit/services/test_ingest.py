"""Ingestion use case with an in-memory ingestion log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.domain.observation import (
    ObservationsRecorded,
    SubmittedObservation,
    derive_observation_id,
)
from app.ports import IngestionLogUnavailable
from app.services.ingest import ingest

SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)
NOW = datetime(2026, 1, 15, 14, 0, 1, tzinfo=UTC)


class MemoryLog:
    def __init__(self, fail: bool = False) -> None:
        self.records: list[ObservationsRecorded] = []
        self.fail = fail

    async def append(
        self, records: Sequence[ObservationsRecorded], actor: str | None = None
    ) -> None:
        if self.fail:
            raise IngestionLogUnavailable("down")
        self.records.extend(records)


def obs(
    series: str = "ETH-USD", source: str = "a", value: float = 1.0, oid: str | None = None
) -> SubmittedObservation:
    return SubmittedObservation(
        reference_data_id=series,
        source=source,
        snap=SNAP,
        value=value,
        observed_at=SNAP,
        observation_id=oid,
    )


async def test_ids_in_request_order_and_duplicates_counted() -> None:
    log = MemoryLog()
    items = [obs(source="a"), obs(source="b", oid="client-1"), obs(source="a"), obs(oid="client-1")]
    result = await ingest(items, log, NOW)
    derived = derive_observation_id("ETH-USD", "a", SNAP, 1.0, SNAP, None)
    assert result.observation_ids == [derived, "client-1", derived, "client-1"]
    assert result.accepted == 4
    assert result.duplicates == 2
    stored = [o.observation_id for r in log.records for o in r.observations]
    assert stored == [derived, "client-1"]


async def test_a_client_key_is_unique_within_its_series_and_snap() -> None:
    log = MemoryLog()
    items = [obs("A", oid="k"), obs("B", oid="k"), obs("A", source="b", oid="k")]
    result = await ingest(items, log, NOW)
    # the same key in another series is another observation; in the same one, a duplicate
    assert (result.accepted, result.duplicates) == (3, 1)
    stored = [(o.reference_data_id, o.source) for r in log.records for o in r.observations]
    assert sorted(stored) == [("A", "a"), ("B", "a")]


async def test_records_are_grouped_by_series_and_stamped() -> None:
    log = MemoryLog()
    await ingest([obs("A", "x"), obs("B", "x"), obs("A", "y")], log, NOW)
    assert [(r.reference_data_id, len(r.observations)) for r in log.records] == [("A", 2), ("B", 1)]
    assert all(o.received_at == NOW for r in log.records for o in r.observations)
    assert all(r.schema_version == 1 for r in log.records)


async def test_unavailable_log_propagates() -> None:
    with pytest.raises(IngestionLogUnavailable):
        await ingest([obs()], MemoryLog(fail=True), NOW)


def test_derived_id_is_deterministic_and_content_sensitive() -> None:
    base = derive_observation_id("X", "s", SNAP, 1.0, SNAP, {"bid": 1.0})
    assert base == derive_observation_id("X", "s", SNAP, 1.0, SNAP, {"bid": 1.0})
    same_instant = SNAP.astimezone(timezone(timedelta(hours=1)))
    assert base == derive_observation_id("X", "s", same_instant, 1.0, SNAP, {"bid": 1.0})
    assert base != derive_observation_id("X", "s", SNAP, 1.0000001, SNAP, {"bid": 1.0})
    assert base != derive_observation_id("X", "t", SNAP, 1.0, SNAP, {"bid": 1.0})
    assert base != derive_observation_id("X", "s", SNAP, 1.0, SNAP, {"bid": 2.0})
    assert base != derive_observation_id(
        "X", "s", SNAP, 1.0, SNAP + timedelta(microseconds=1), {"bid": 1.0}
    )
    assert base.startswith("h:")
    assert len(base) == 34


async def test_large_series_is_split_into_records_below_the_broker_limit() -> None:
    log = MemoryLog()
    items = [obs(source=f"s{i}", value=float(i)) for i in range(2500)]
    await ingest(items, log, NOW)
    assert [len(r.observations) for r in log.records] == [1000, 1000, 500]
    assert {r.reference_data_id for r in log.records} == {"ETH-USD"}
    sources = [o.source for r in log.records for o in r.observations]
    assert sources == [f"s{i}" for i in range(2500)]
