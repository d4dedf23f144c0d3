"""The typed client (client/, `qis_client`) against the running service: post through
the client, read back every route, page through history, errors as typed exceptions."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest
from qis_client import (
    AsyncQisClient,
    InvalidRequest,
    NotFound,
    OfficialValue,
    QisClient,
    SeriesConfig,
    SubmittedObservation,
    observation_id,
)

from tests.conftest import unique_series
from tests.e2e.conftest import Service, token_provider
from tests.e2e.reconciliation_helpers import current_snap

SOURCES = ("a", "b", "c")


def observations(series: str, snaps: list[datetime]) -> list[SubmittedObservation]:
    """Three sources per snap around 100 + i: the median is 100 + i."""
    return [
        SubmittedObservation(
            reference_data_id=series,
            source=source,
            snap=snap,
            value=100.0 + i + offset,
            observed_at=snap + timedelta(milliseconds=100),
            attributes={"desk": "fx", "lot": 3} if source == "a" else None,
        )
        for i, snap in enumerate(snaps)
        for source, offset in zip(SOURCES, (0.0, 0.02, -0.01), strict=True)
    ]


async def published(qis: AsyncQisClient, series: str, snap: datetime) -> OfficialValue:
    """Poll (bounded) until the worker published the snap's first version."""
    for _ in range(300):
        try:
            return await qis.official_value(series, snap)
        except NotFound:
            await asyncio.sleep(0.1)
    raise AssertionError(f"no official value of {series} at {snap} in 30 s")


async def test_post_through_the_client_and_read_every_route_back(api: str, worker: Service) -> None:
    series = unique_series("QC")
    now = current_snap()
    snaps = [now - timedelta(seconds=s) for s in (5, 4, 3, 2, 1)]
    items = observations(series, snaps)
    async with AsyncQisClient(api, max_batch=4, token=token_provider()) as qis:
        configured = await qis.put_series(
            series, SeriesConfig(expected_sources=SOURCES, min_sources=2)
        )
        assert configured.config.expected_sources == SOURCES
        assert (await qis.get_series(series)).config.min_sources == 2

        result = await qis.post_observations(items, concurrency=2)
        assert result.requests == 4  # 15 observations, 4 a request
        assert result.accepted == 15
        assert result.observation_ids == [observation_id(o) for o in items]
        # Re-sending everything (what a retry does) is idempotent: the same ids, no new rows.
        again = await qis.post_observations(items)
        assert again.observation_ids == result.observation_ids
        # A sentinel after the re-send, on the same partition: once it is stored, so is
        # whatever the re-send would have stored.
        sentinel = SubmittedObservation(
            reference_data_id=series, source="z", snap=now, value=1.0, observed_at=now
        )
        await qis.post_observations([sentinel])
        for _ in range(300):
            if [o async for o in qis.lineage(series, now)]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the sentinel was never stored")

        values = [await published(qis, series, snap) for snap in snaps]
        assert [v.value for v in values] == [100.0, 101.0, 102.0, 103.0, 104.0]
        assert all(v.version == 1 and v.sources_used == ("a", "b", "c") for v in values)

        history = [point async for point in qis.history(series, snaps[0], now, page_size=2)]
        assert [(p.snap, p.version, p.value) for p in history] == [
            (v.snap, 1, v.value) for v in values
        ]
        versions = await qis.versions(series, snaps[2])
        assert versions == [values[2]]
        assert await qis.official_value(series, snaps[2], version=1) == values[2]

        lineage = [o async for o in qis.lineage(series, snaps[0], page_size=1)]
        assert sorted((o.source, o.value) for o in lineage) == [
            ("a", 100.0),
            ("b", 100.02),
            ("c", 99.99),
        ]
        assert {o.observation_id for o in lineage} == set(result.observation_ids[:3])
        by_source = {o.source: o for o in lineage}
        assert by_source["a"].attributes == {"desk": "fx", "lot": 3.0}

        quality = await qis.quality(series, from_=snaps[0], to=now)
        assert quality.count == 5
        assert quality.from_ == snaps[0]
        assert quality.minimum_score == min(v.quality.score for v in values)

        listed = [s.reference_data_id async for s in qis.list_series(page_size=1000)]
        assert series in listed
        assert listed == sorted(listed)


def test_the_sync_client_pages_history_and_raises_typed_problems(api: str, worker: Service) -> None:
    series = unique_series("QS")
    now = current_snap()
    snaps = [now - timedelta(seconds=s) for s in range(7, 0, -1)]
    with QisClient(api, token=token_provider()) as qis:
        qis.put_series(series, SeriesConfig(expected_sources=SOURCES))
        assert qis.post_observations(observations(series, snaps)).accepted == 21
        for _ in range(300):
            page = qis.history_page(series, snaps[0], now, limit=1000)
            if len(page.items) == len(snaps):
                break
            time.sleep(0.1)
        for size in (1, 3, 7):
            points = list(qis.history(series, snaps[0], now, page_size=size))
            assert [p.snap for p in points] == snaps, size
            assert [p.value for p in points] == [100.0 + i for i in range(7)]

        bad = SubmittedObservation(
            reference_data_id="not a series id",
            source="a",
            snap=now,
            value=1.0,
            observed_at=now,
        )
        with pytest.raises(InvalidRequest) as caught:
            qis.post_observations([bad])
        assert caught.value.status == 422
        assert caught.value.title == "Unprocessable Content"
        assert [e.loc for e in caught.value.errors] == [["observations", 0, "reference_data_id"]]

        with pytest.raises(NotFound) as missing:
            qis.get_series(unique_series("QNONE"))
        assert missing.value.status == 404
        with pytest.raises(InvalidRequest) as cursor:
            qis.list_series_page(cursor="!!not-a-cursor!!")
        assert cursor.value.status == 400
        assert [e.loc for e in cursor.value.errors] == [["query", "cursor"]]
        ready = qis.readiness()
        assert ready.status in ("ready", "degraded")
        assert ready.failing == []
