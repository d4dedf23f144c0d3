"""Query routes over data written through the real pipeline (POST -> Kafka -> worker -> PostgreSQL),
read through `qis api` processes and their two-level cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from app.settings import Settings
from tests.conftest import unique_series
from tests.e2e.conftest import Service, bearer, running_api
from tests.e2e.reconciliation_helpers import (
    configure,
    current_snap,
    item,
    official_value,
    post,
    stamp,
)
from tests.stack import stack

ABC = ["a", "b", "c"]


@pytest.fixture(scope="module")
def second_api(settings: Settings, api: str) -> Iterator[str]:
    """Another `qis api` process on the same stack: its own L1, the shared L2."""
    with running_api(settings, "api-2") as base_url:
        yield base_url


@pytest.fixture
async def http2(second_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=second_api, timeout=30, headers=bearer()) as client:
        yield client


async def publish_snaps(
    http: httpx.AsyncClient, series: str, snaps: list[datetime], base: float = 100.0
) -> list[dict[str, Any]]:
    """Three agreeing sources per snap; wait for every version 1."""
    await configure(http, series, expected_sources=ABC)
    items = []
    for i, snap in enumerate(snaps):
        value = base + i
        items += [
            item(series, "a", value, snap),
            item(series, "b", value + 0.02, snap),
            item(series, "c", value - 0.01, snap),
        ]
    await post(http, *items)
    return [await official_value(http, series, snap) for snap in snaps]


async def history(
    http: httpx.AsyncClient, series: str, params: dict[str, Any]
) -> list[list[dict[str, Any]]]:
    """Every page of a history query, following next_cursor."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        response = await http.get(f"/v1/reference-data/{series}/official-values", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_every_query_route_reads_what_the_pipeline_wrote(
    http: httpx.AsyncClient, worker: Service
) -> None:
    series = unique_series("QE")
    now = current_snap()
    snaps = [now - timedelta(seconds=s) for s in (4, 3, 2, 1)]
    versions = await publish_snaps(http, series, snaps)
    assert [v["value"] for v in versions] == [100.0, 101.0, 102.0, 103.0]  # the medians
    assert {v["status"] for v in versions} == {"official"}

    # A late correction of source c at the second snap: version 2, median moves.
    await post(http, item(series, "c", 101.04, snaps[1], observed_after=0.5))
    v2 = await official_value(http, series, snaps[1], at_least=2)
    assert (v2["version"], v2["supersedes"], v2["value"]) == (2, 1, 101.02)

    official = f"/v1/reference-data/{series}/official-values/{stamp(snaps[1])}"
    assert (await http.get(official)).json() == v2
    assert (await http.get(official, params={"version": 1})).json() == versions[1]
    as_of_v1 = await http.get(official, params={"as_of": versions[1]["recorded_at"]})
    assert as_of_v1.json() == versions[1]

    listed = (await http.get(f"{official}/versions")).json()["items"]
    assert listed == [versions[1], v2]

    window = {"from": stamp(snaps[0]), "to": stamp(now)}
    raw = [i for page in await history(http, series, window) for i in page]
    assert [(i["snap"], i["version"], i["value"]) for i in raw] == [
        (stamp(snaps[0]), 1, 100.0),
        (stamp(snaps[1]), 2, 101.02),
        (stamp(snaps[2]), 1, 102.0),
        (stamp(snaps[3]), 1, 103.0),
    ]
    per_minute = [i for p in await history(http, series, window | {"granularity": "1m"}) for i in p]
    buckets: dict[datetime, list[datetime]] = {}
    for snap in snaps:
        buckets.setdefault(snap.replace(second=0), []).append(snap)
    assert [(i["bucket"], i["snap"], i["count"]) for i in per_minute] == [
        (stamp(start), stamp(max(members)), len(members)) for start, members in buckets.items()
    ]

    lineage = await http.get(
        f"/v1/reference-data/{series}/observations", params={"snap": stamp(snaps[1])}
    )
    observations = lineage.json()["items"]
    # One request's observations share their received_at (then they are in id order).
    assert sorted((o["source"], o["value"]) for o in observations[:3]) == [
        ("a", 101.0),
        ("b", 101.02),
        ("c", 100.99),
    ]
    assert (observations[3]["source"], observations[3]["value"]) == ("c", 101.04)
    assert all(o["received_at"].endswith("Z") for o in observations)
    assert observations[3]["received_at"] > observations[0]["received_at"]
    assert sorted(v2["sources_used"]) == ABC

    quality = (
        await http.get(
            f"/v1/reference-data/{series}/quality",
            params={"from": stamp(snaps[0]), "to": stamp(now)},
        )
    ).json()
    latest = [versions[0], v2, versions[2], versions[3]]
    scores = [v["quality"]["score"] for v in latest]
    assert quality["count"] == 4
    assert quality["average_score"] == round(sum(scores) / 4, 4)
    assert quality["minimum_score"] == min(scores)
    assert quality["suspect_count"] == sum(v["status"] == "suspect" for v in latest)
    assert quality["average_dimensions"]["completeness"] == 1.0
    hourly = await http.get(f"/v1/reference-data/{series}/quality", params={"window": "1h"})
    assert hourly.json()["count"] == 4


async def test_a_new_version_is_latest_within_1s_in_every_api_process(
    http: httpx.AsyncClient, http2: httpx.AsyncClient, worker: Service, pool: asyncpg.Pool
) -> None:
    series, snap = unique_series("QI"), current_snap()
    (v1,) = await publish_snaps(http, series, [snap])
    url = f"/v1/reference-data/{series}/official-values/{stamp(snap)}"
    # Past the replica guard, then read enough for both processes to hold v1 in L1.
    await asyncio.sleep(1.2)
    for client in (http, http2):
        for _ in range(3):
            assert (await client.get(url)).json() == v1

    await post(http, item(series, "c", 100.05, snap, observed_after=0.5))
    published = await wait_for_version(pool, series, snap, 2)
    seen: dict[str, float] = {}

    async def until_v2(name: str, client: httpx.AsyncClient) -> None:
        while time.monotonic() - published < 5:
            body = (await client.get(url)).json()
            if body["version"] == 2:
                seen[name] = time.monotonic() - published
                return
            await asyncio.sleep(0.01)

    await asyncio.gather(until_v2("api-1", http), until_v2("api-2", http2))
    assert set(seen) == {"api-1", "api-2"}, f"still version 1 after 5 s: {seen}"
    assert max(seen.values()) <= 1.0, seen
    assert (await http2.get(url)).json()["supersedes"] == 1


async def test_reads_still_answer_with_redis_stopped(
    http: httpx.AsyncClient, worker: Service
) -> None:
    series, snap = unique_series("QR"), current_snap()
    (v1,) = await publish_snaps(http, series, [snap])
    url = f"/v1/reference-data/{series}/official-values/{stamp(snap)}"
    stack("down", "redis")
    try:
        latest = await http.get(url)
        by_version = await http.get(url, params={"version": 1})
        window = {"from": stamp(snap), "to": stamp(snap + timedelta(seconds=1))}
        pages = await http.get(f"/v1/reference-data/{series}/official-values", params=window)
        ready = await http.get("/health/ready")
    finally:
        stack("up", "redis")
    assert latest.status_code == 200
    assert latest.json() == v1
    assert by_version.json() == v1
    assert [i["value"] for i in pages.json()["items"]] == [v1["value"]]
    assert ready.status_code == 200
    assert (ready.json()["status"], ready.json()["degraded"]) == ("degraded", ["redis"])


async def test_history_as_of_reproduces_the_series_as_it_was_known(
    http: httpx.AsyncClient, worker: Service
) -> None:
    series = unique_series("QA")
    now = current_snap()
    snaps = [now - timedelta(seconds=s) for s in (3, 2, 1)]
    known = await publish_snaps(http, series, snaps)
    then = max(datetime.fromisoformat(v["recorded_at"]) for v in known)
    await post(
        http,
        item(series, "a", 110.0, snaps[0], observed_after=0.5),
        item(series, "b", 110.02, snaps[0], observed_after=0.5),
        item(series, "c", 202.0, snaps[2], observed_after=0.5),
    )
    await official_value(http, series, snaps[0], at_least=2)
    await official_value(http, series, snaps[2], at_least=2)
    window = {"from": stamp(snaps[0]), "to": stamp(now + timedelta(seconds=1))}

    as_then = [i for p in await history(http, series, window | {"as_of": stamp(then)}) for i in p]
    assert [{k: i[k] for k in known[0]} for i in as_then] == known
    current = [i for p in await history(http, series, window) for i in p]
    assert [i["version"] for i in current] == [2, 1, 2]
    assert current[0]["value"] == 110.01  # c (99.99) is now an outlier: median of a and b
    assert current[1] | {"bucket": None, "count": None} == known[1] | {
        "bucket": None,
        "count": None,
    }


async def test_pagination_returns_every_item_exactly_once(
    http: httpx.AsyncClient, worker: Service
) -> None:
    series = unique_series("QP")
    now = current_snap()
    snaps = [now - timedelta(seconds=s) for s in range(7, 0, -1)]
    await publish_snaps(http, series, snaps)
    window = {"from": stamp(snaps[0]), "to": stamp(now)}
    for limit in (1, 2, 3, 7, 1000):
        pages = await history(http, series, window | {"limit": limit})
        snapped = [i["snap"] for page in pages for i in page]
        assert snapped == [stamp(s) for s in snaps], limit
        assert all(len(page) <= limit for page in pages)
        assert len(pages) == -(-len(snaps) // limit)


async def wait_for_version(
    pool: asyncpg.Pool, series: str, snap: datetime, version: int, timeout: float = 30
) -> float:
    """Poll the writer until the version is committed; return that moment (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await pool.fetchval(
            """SELECT 1 FROM official_values
                WHERE reference_data_id = $1 AND snap = $2 AND version = $3""",
            series,
            snap.astimezone(UTC),
            version,
        )
        if found:
            return time.monotonic()
        await asyncio.sleep(0.005)
    raise AssertionError(f"version {version} of {series} not committed in {timeout}s")
