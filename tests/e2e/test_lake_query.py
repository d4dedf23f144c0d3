"""The lake answers as the HTTP API does: data written through the real pipeline (POST ->
Kafka -> worker -> PostgreSQL), corrected, archived to a bucket of the test's own on the
stack's S3 by the archive service, then read both ways: `qis api` over HTTP and the
lake's query service."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec

from app.adapters.lake_formats import ROW_GROUP_ROWS
from app.adapters.lake_reader import LakeFiles, LakeQueries, LakeReader, s3_filesystem
from app.adapters.postgres.archive import PostgresArchiveSource
from app.adapters.s3_lake import S3Lake
from app.domain.lake import HOUR, hour_of
from app.services.archive import Archiver
from app.services.lake_query import uncached_query_service
from app.services.query import QueryService
from app.settings import Settings
from tests.conftest import unique_series
from tests.e2e.conftest import Service
from tests.e2e.reconciliation_helpers import (
    configure,
    current_snap,
    item,
    official_value,
    post,
    stamp,
)
from tests.integration.lake_helpers import lake_settings, own_lake

__all__ = ["own_lake"]
ABC = ["a", "b", "c"]


class UnrecordedSource(PostgresArchiveSource):
    """The archive's database side, without recording the hour in the shared database's
    `lake_hours` (the scheduler's archive job of other tests owns that table there)."""

    async def record_archived(self, hour: datetime, generation: int, as_of: datetime) -> None:
        return None


async def archive(pool: asyncpg.Pool, lake: S3Lake, hours: list[datetime]) -> None:
    """Each hour, every series, through the archive service (app/services/archive.py)."""
    archiver = Archiver(UnrecordedSource(pool, ROW_GROUP_ROWS), lake)
    for hour in hours:
        result = await archiver.archive_hour(hour)
        assert result.rows > 0


async def both(
    http: httpx.AsyncClient, path: str, params: dict[str, Any], lake: bytes
) -> tuple[bytes, bytes]:
    response = await http.get(path, params=params)
    api = response.content if response.status_code == 200 else b""
    assert response.status_code in (200, 404), response.text
    return api, lake


async def test_the_lake_answers_as_the_api_including_corrections(
    http: httpx.AsyncClient,
    worker: Service,
    pool: asyncpg.Pool,
    own_lake: S3Lake,
    settings: Settings,
) -> None:
    series = unique_series("LE")
    await configure(http, series, expected_sources=ABC)
    now = current_snap()
    snaps = [now - timedelta(seconds=s) for s in (4, 3, 2, 1)]
    items = []
    for i, snap in enumerate(snaps):
        items += [
            item(series, "a", 100.0 + i, snap),
            item(series, "b", 100.02 + i, snap),
            item(series, "c", 99.99 + i, snap),
        ]
    await post(http, *items)
    v1 = [await official_value(http, series, snap) for snap in snaps]
    # A late correction of source c at the second snap: version 2, the median moves.
    await post(http, item(series, "c", 101.04, snaps[1], observed_after=0.5))
    v2 = await official_value(http, series, snaps[1], at_least=2)
    assert (v2["version"], v2["value"]) == (2, 101.02)

    hours = sorted({hour_of(s) for s in snaps})
    await archive(pool, own_lake, hours)
    files = LakeFiles(own_lake, s3_filesystem(lake_settings(settings, own_lake.bucket)))
    lake: QueryService = uncached_query_service(LakeQueries(LakeReader(files)))

    official = f"/v1/reference-data/{series}/official-values"
    snap = snaps[1]
    before = msgspec.convert(v2["recorded_at"], datetime) - timedelta(microseconds=1)
    first = msgspec.convert(v1[0]["recorded_at"], datetime) - timedelta(microseconds=1)
    start, end = hours[0], hours[-1] + HOUR
    pairs = [
        await both(http, f"{official}/{stamp(snap)}", {}, await lake.official_value(series, snap)),
        await both(
            http,
            f"{official}/{stamp(snap)}",
            {"as_of": stamp(before)},
            await lake.official_value(series, snap, as_of=before),
        ),
        await both(
            http,
            f"{official}/{stamp(snap)}",
            {"as_of": v2["recorded_at"]},
            await lake.official_value(
                series, snap, as_of=msgspec.convert(v2["recorded_at"], datetime)
            ),
        ),
        await both(
            http,
            f"{official}/{stamp(snap)}",
            {"as_of": stamp(first)},
            await lake.official_value(series, snap, as_of=first),
        ),
        await both(
            http,
            f"{official}/{stamp(snap)}",
            {"version": 1},
            await lake.official_value(series, snap, version=1),
        ),
        await both(
            http, f"{official}/{stamp(snap)}/versions", {}, await lake.versions(series, snap)
        ),
        await both(
            http,
            f"/v1/reference-data/{series}/observations",
            {"snap": stamp(snap), "limit": 2},
            await lake.lineage(series, snap, limit=2),
        ),
    ]
    for as_of in (None, before):
        for granularity in ("raw", "1m", "1h"):
            params: dict[str, Any] = {
                "from": stamp(start),
                "to": stamp(end),
                "granularity": granularity,
                "limit": 3,
            }
            if as_of is not None:
                params["as_of"] = stamp(as_of)
            pairs.append(
                await both(
                    http,
                    official,
                    params,
                    await lake.history(
                        series, start, end, granularity=granularity, as_of=as_of, limit=3
                    ),
                )
            )

    for api, from_lake in pairs:
        assert from_lake == api
    # Not vacuous: the correction is there, and not yet as of just before it.
    assert msgspec.json.decode(pairs[0][0])["version"] == 2
    assert msgspec.json.decode(pairs[1][0])["version"] == 1
    assert msgspec.json.decode(pairs[2][0])["version"] == 2
    assert pairs[3][0] == b""  # nothing was known before the first version
    assert len(msgspec.json.decode(pairs[5][0])["items"]) == 2
    assert [i["version"] for i in msgspec.json.decode(pairs[7][0])["items"]] == [1, 2, 1]
    assert [i["version"] for i in msgspec.json.decode(pairs[10][0])["items"]] == [1, 1, 1]
