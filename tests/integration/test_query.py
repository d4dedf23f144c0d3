"""Query routes against the real PostgreSQL and Redis, with versions written by SQL.

(The e2e tests write them through the pipeline; here each case sets up exactly the
versions and knowledge times it needs.) The app runs in-process with its lifespan, so
its publication listener is live: inserting a version invalidates the cache as the
worker's commit would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.adapters.postgres.observations import insert_observations
from app.api.auth import READ
from app.domain.observation import Observation
from app.entrypoints.api import create_app
from app.settings import Settings
from tests.auth import bearer
from tests.conftest import unique_series

Client = AsyncTestClient  # type: ignore[type-arg]

SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)
T1 = datetime(2026, 1, 15, 14, 0, 3, tzinfo=UTC)
T2 = datetime(2026, 1, 15, 15, 30, tzinfo=UTC)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers.update(bearer(READ))
        yield client


def ts(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def insert_version(
    pool: asyncpg.Pool,
    series: str,
    snap: datetime,
    version: int,
    value: float,
    recorded_at: datetime,
    *,
    status: str = "official",
    score: float = 1.0,
    completeness: float = 1.0,
) -> None:
    quality = {
        "score": score,
        "completeness": completeness,
        "timeliness": 1.0,
        "consistency": 1.0,
        "validity": 1.0,
    }
    await pool.execute(
        """INSERT INTO official_values
               (reference_data_id, snap, version, value, status, method, sources_used,
                sources_excluded, quality, observation_ids, supersedes, recorded_at)
           VALUES ($1, $2, $3, $4, $5, 'median', $6, $7::jsonb, $8::jsonb, $9, $10, $11)""",
        series,
        snap,
        version,
        value,
        status,
        ["a", "b"],
        msgspec.json.encode([{"source": "c", "reason": "outlier"}]).decode(),
        msgspec.json.encode(quality).decode(),
        ["o1", "o2"],
        version - 1 if version > 1 else None,
        recorded_at,
    )


async def test_official_value_latest_by_version_and_as_of(
    client: Client, pool: asyncpg.Pool
) -> None:
    series = unique_series("Q")
    await insert_version(pool, series, SNAP, 1, 100.0, T1)
    await insert_version(pool, series, SNAP, 2, 101.5, T2, status="suspect", score=0.6667)
    base = f"/v1/reference-data/{series}/official-values/{ts(SNAP)}"

    latest = await client.get(base)
    assert latest.status_code == 200
    assert latest.headers["content-type"] == "application/json"
    assert latest.json() == {
        "reference_data_id": series,
        "snap": "2026-01-15T14:00:00Z",
        "version": 2,
        "value": 101.5,
        "status": "suspect",
        "method": "median",
        "sources_used": ["a", "b"],
        "sources_excluded": [{"source": "c", "reason": "outlier"}],
        "quality": {
            "score": 0.6667,
            "completeness": 1.0,
            "timeliness": 1.0,
            "consistency": 1.0,
            "validity": 1.0,
        },
        "supersedes": 1,
        "recorded_at": "2026-01-15T15:30:00Z",
    }
    first = (await client.get(base, params={"version": 1})).json()
    assert (first["version"], first["value"], first["supersedes"]) == (1, 100.0, None)
    as_of = await client.get(base, params={"as_of": "2026-01-15T15:00:00Z"})
    assert as_of.json()["version"] == 1
    # The same instant in another offset is the same read.
    as_of_paris = await client.get(base, params={"as_of": "2026-01-15T16:30:00+01:00"})
    assert as_of_paris.json()["version"] == 2
    before = await client.get(base, params={"as_of": "2026-01-15T14:00:00Z"})
    assert before.status_code == 404
    assert before.headers["content-type"] == "application/problem+json"
    assert (await client.get(base, params={"version": 3})).status_code == 404


async def test_unknown_snap_is_404_then_found_once_published(
    client: Client, pool: asyncpg.Pool
) -> None:
    series = unique_series("Q")
    url = f"/v1/reference-data/{series}/official-values/{ts(SNAP)}"
    missing = await client.get(url)
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith(f"no official value of {series}")
    await insert_version(pool, series, SNAP, 1, 42.0, T1)
    body = await poll_until(client, url, lambda r: r.status_code == 200, within=1.0)
    assert body["value"] == 42.0


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        (
            "/v1/reference-data/eth-usd/official-values/2026-01-15T14:00:00Z",
            {},
            "reference_data_id",
        ),
        ("/v1/reference-data/ETH/official-values/2026-01-15T14:00:00", {}, "snap"),
        ("/v1/reference-data/ETH/official-values/yesterday", {}, "snap"),
        (
            "/v1/reference-data/ETH/official-values/2026-01-15T14:00:00Z",
            {"version": "1", "as_of": "2026-01-15T14:00:00Z"},
            "as_of",
        ),
        (
            "/v1/reference-data/ETH/official-values/2026-01-15T14:00:00Z",
            {"as_of": "2026-01-15"},
            "as_of",
        ),
        (
            "/v1/reference-data/ETH/official-values",
            {"from": "2026-01-15T00:00:00Z", "to": "2026-01-16T00:00:00Z", "limit": "1001"},
            "limit",
        ),
        (
            "/v1/reference-data/ETH/official-values",
            {"from": "2026-01-15T00:00:00Z", "to": "2026-01-16T00:00:00Z", "granularity": "5m"},
            "granularity",
        ),
        (
            "/v1/reference-data/ETH/official-values",
            {"from": "2026-01-16T00:00:00Z", "to": "2026-01-15T00:00:00Z"},
            "to",
        ),
        (
            "/v1/reference-data/ETH/official-values",
            {"from": "2026-01-15T00:00:00Z", "to": "2026-01-16T00:00:00Z", "cursor": "nope"},
            "cursor",
        ),
        ("/v1/reference-data/ETH/quality", {"window": "1w"}, "window"),
        ("/v1/reference-data/ETH/quality", {"from": "2026-01-15T00:00:00Z"}, "window"),
        (
            "/v1/reference-data/ETH/observations",
            {"snap": "2026-01-15T14:00:00Z", "limit": "0"},
            "limit",
        ),
    ],
)
async def test_bad_parameters_are_400_problems_naming_them(
    client: Client, path: str, params: dict[str, str], loc: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 400
    assert loc in [item["loc"][-1] for item in problem["errors"]], problem


async def test_versions_oldest_first(client: Client, pool: asyncpg.Pool) -> None:
    series = unique_series("Q")
    for version, value in ((1, 10.0), (2, 11.0), (3, 12.0)):
        await insert_version(pool, series, SNAP, version, value, T1 + timedelta(minutes=version))
    url = f"/v1/reference-data/{series}/official-values/{ts(SNAP)}/versions"
    body = (await client.get(url)).json()
    assert [(v["version"], v["value"], v["supersedes"]) for v in body["items"]] == [
        (1, 10.0, None),
        (2, 11.0, 1),
        (3, 12.0, 2),
    ]
    await insert_version(pool, series, SNAP, 4, 13.0, T2)
    body = await poll_until(client, url, lambda r: len(r.json()["items"]) == 4, within=1.0)
    assert body["items"][-1]["value"] == 13.0
    other = f"/v1/reference-data/{series}/official-values/{ts(SNAP + timedelta(hours=1))}/versions"
    assert (await client.get(other)).status_code == 404


async def seed_history(pool: asyncpg.Pool, series: str) -> list[datetime]:
    """Ten minute-snaps (values 0..9) known at T1; at T2 snaps 2 and 4 revised, 10 added."""
    snaps = [SNAP + timedelta(minutes=i) for i in range(11)]
    for i, snap in enumerate(snaps[:10]):
        await insert_version(pool, series, snap, 1, float(i), T1)
    await insert_version(pool, series, snaps[2], 2, 20.0, T2)
    await insert_version(pool, series, snaps[4], 2, 40.0, T2)
    await insert_version(pool, series, snaps[10], 1, 10.0, T2)
    return snaps


async def all_pages(client: Client, url: str, params: dict[str, Any]) -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        response = await client.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_history_pages_return_every_snap_exactly_once(
    client: Client, pool: asyncpg.Pool
) -> None:
    series = unique_series("Q")
    snaps = await seed_history(pool, series)
    url = f"/v1/reference-data/{series}/official-values"
    window = {"from": ts(SNAP), "to": ts(SNAP + timedelta(hours=1)), "limit": 3}
    pages = await all_pages(client, url, window)
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    items = [item for page in pages for item in page]
    assert [item["snap"] for item in items] == [ts(s) for s in snaps]
    assert [item["value"] for item in items] == [0, 1, 20, 3, 40, 5, 6, 7, 8, 9, 10]
    assert [item["version"] for item in items] == [1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1]
    assert all(item["count"] == 1 and item["bucket"] == item["snap"] for item in items)
    # A page size that divides the total exactly still ends with next_cursor null.
    exact = await all_pages(client, url, window | {"limit": 11})
    assert [len(p) for p in exact] == [11]
    # `to` is exclusive.
    head = await client.get(url, params={"from": ts(SNAP), "to": ts(snaps[2])})
    assert [i["value"] for i in head.json()["items"]] == [0, 1]


async def test_history_as_of_reproduces_the_series_as_it_was_known(
    client: Client, pool: asyncpg.Pool
) -> None:
    series = unique_series("Q")
    await seed_history(pool, series)
    url = f"/v1/reference-data/{series}/official-values"
    window = {"from": ts(SNAP), "to": ts(SNAP + timedelta(hours=1))}
    then = (await client.get(url, params=window | {"as_of": ts(T1)})).json()
    assert [i["value"] for i in then["items"]] == [float(i) for i in range(10)]
    assert {i["version"] for i in then["items"]} == {1}
    before = await client.get(url, params=window | {"as_of": ts(T1 - timedelta(seconds=1))})
    assert before.json() == {"items": [], "next_cursor": None}
    paged = await all_pages(client, url, window | {"as_of": ts(T1), "limit": 4})
    assert [i["value"] for page in paged for i in page] == [float(i) for i in range(10)]
    now = (await client.get(url, params=window | {"as_of": ts(T2)})).json()
    assert [i["value"] for i in now["items"]] == [0, 1, 20, 3, 40, 5, 6, 7, 8, 9, 10]


async def test_history_buckets_hold_the_last_snap_and_the_count(
    client: Client, pool: asyncpg.Pool
) -> None:
    series = unique_series("Q")
    # 14:00, 14:20, 14:40, 15:00, 15:20 and 17:00: buckets 14h (3), 15h (2), 17h (1).
    offsets = [0, 20, 40, 60, 80, 180]
    for minutes in offsets:
        await insert_version(pool, series, SNAP + timedelta(minutes=minutes), 1, minutes, T1)
    url = f"/v1/reference-data/{series}/official-values"
    window = {"from": ts(SNAP), "to": ts(SNAP + timedelta(days=1)), "granularity": "1h"}
    pages = await all_pages(client, url, window | {"limit": 2})
    items = [i for page in pages for i in page]
    assert [(i["bucket"], i["snap"], i["value"], i["count"]) for i in items] == [
        ("2026-01-15T14:00:00Z", "2026-01-15T14:40:00Z", 40.0, 3),
        ("2026-01-15T15:00:00Z", "2026-01-15T15:20:00Z", 80.0, 2),
        ("2026-01-15T17:00:00Z", "2026-01-15T17:00:00Z", 180.0, 1),
    ]
    daily = (await client.get(url, params=window | {"granularity": "1d"})).json()["items"]
    assert [(i["bucket"], i["value"], i["count"]) for i in daily] == [
        ("2026-01-15T00:00:00Z", 180.0, 6)
    ]


async def test_history_of_open_windows_follows_publications(
    client: Client, pool: asyncpg.Pool
) -> None:
    series = unique_series("Q")
    await insert_version(pool, series, SNAP, 1, 1.0, T1)
    url = f"/v1/reference-data/{series}/official-values"
    window = {"from": ts(SNAP), "to": ts(SNAP + timedelta(hours=1))}
    assert [i["value"] for i in (await client.get(url, params=window)).json()["items"]] == [1.0]
    await insert_version(pool, series, SNAP + timedelta(minutes=1), 1, 2.0, T2)
    body = await poll_until(
        client, url, lambda r: len(r.json()["items"]) == 2, within=1.0, params=window
    )
    assert [i["value"] for i in body["items"]] == [1.0, 2.0]


async def test_lineage_lists_every_observation_with_received_at(
    client: Client, pool: asyncpg.Pool
) -> None:
    series = unique_series("Q")
    received = datetime(2026, 1, 15, 14, 0, 1, tzinfo=UTC)
    observations = [
        Observation(
            observation_id=f"{series}-{i}",
            reference_data_id=series,
            source=source,
            snap=SNAP,
            value=100.0 + i,
            observed_at=SNAP,
            received_at=received + timedelta(milliseconds=10 * i),
            attributes={"bid": 99.5} if i == 0 else None,
        )
        for i, source in enumerate(["a", "b", "c", "a", "b"])
    ]
    async with pool.acquire() as conn:
        await insert_observations(conn, observations)
    url = f"/v1/reference-data/{series}/observations"
    pages = await all_pages(client, url, {"snap": ts(SNAP), "limit": 2})
    assert [len(p) for p in pages] == [2, 2, 1]
    items = [i for page in pages for i in page]
    assert [i["observation_id"] for i in items] == [o.observation_id for o in observations]
    assert items[0] == {
        "observation_id": f"{series}-0",
        "reference_data_id": series,
        "source": "a",
        "snap": "2026-01-15T14:00:00Z",
        "value": 100.0,
        "observed_at": "2026-01-15T14:00:00Z",
        "received_at": "2026-01-15T14:00:01Z",
        "attributes": {"bid": 99.5},
    }
    assert items[4]["received_at"] == "2026-01-15T14:00:01.040000Z"
    other = await client.get(url, params={"snap": ts(SNAP + timedelta(hours=1))})
    assert other.json() == {"items": [], "next_cursor": None}


async def test_quality_summary_over_a_range_and_a_window(
    client: Client, pool: asyncpg.Pool
) -> None:
    series = unique_series("Q")
    await insert_version(
        pool, series, SNAP, 1, 1.0, T1, score=0.5, status="suspect", completeness=0.5
    )
    await insert_version(pool, series, SNAP, 2, 1.0, T2, score=1.0)  # the latest counts
    await insert_version(
        pool,
        series,
        SNAP + timedelta(minutes=1),
        1,
        1.0,
        T1,
        score=0.9,
        status="suspect",
        completeness=0.9,
    )
    await insert_version(pool, series, SNAP + timedelta(minutes=2), 1, 1.0, T1, score=0.95)
    url = f"/v1/reference-data/{series}/quality"
    body = (
        await client.get(url, params={"from": ts(SNAP), "to": ts(SNAP + timedelta(hours=1))})
    ).json()
    assert body == {
        "reference_data_id": series,
        "from": "2026-01-15T14:00:00Z",
        "to": "2026-01-15T15:00:00Z",
        "count": 3,
        "average_score": 0.95,
        "minimum_score": 0.9,
        "suspect_count": 1,
        "average_dimensions": {
            "completeness": round((1.0 + 0.9 + 1.0) / 3, 4),
            "timeliness": 1.0,
            "consistency": 1.0,
            "validity": 1.0,
        },
    }
    recent = (await client.get(url, params={"window": "1h"})).json()
    assert (recent["count"], recent["average_score"], recent["average_dimensions"]) == (
        0,
        None,
        None,
    )
    now_snap = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    await insert_version(pool, series, now_snap, 1, 1.0, T2, score=0.8, status="suspect")
    recent = await poll_until(
        client, url, lambda r: r.json()["count"] == 1, within=1.0, params={"window": "1h"}
    )
    assert (recent["average_score"], recent["suspect_count"]) == (0.8, 1)


async def test_openapi_documents_every_query_route(client: Client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    routes = {
        "/v1/reference-data/{reference_data_id}/official-values/{snap}": {
            "200",
            "400",
            "404",
            "500",
            "503",
        },
        "/v1/reference-data/{reference_data_id}/official-values/{snap}/versions": {
            "200",
            "400",
            "404",
            "500",
            "503",
        },
        "/v1/reference-data/{reference_data_id}/official-values": {"200", "400", "500", "503"},
        "/v1/reference-data/{reference_data_id}/observations": {"200", "400", "500", "503"},
        "/v1/reference-data/{reference_data_id}/quality": {"200", "400", "500", "503"},
    }
    for path, own in routes.items():
        statuses = own | {"401", "403", "429"}  # every route needs a token with qis/read
        assert paths[path]["get"]["security"] == [{"cognito": ["qis/read"]}]
        responses = paths[path]["get"]["responses"]
        assert set(responses) == statuses, path
        schema = responses["200"]["content"]["application/json"]["schema"]
        assert "$ref" in schema, (path, schema)
        for status in statuses - {"200"}:
            problem = responses[status]["content"]["application/problem+json"]["schema"]
            assert problem == {"$ref": "#/components/schemas/Problem"}, (path, status)
    history_params = {
        p["name"]
        for p in paths["/v1/reference-data/{reference_data_id}/official-values"]["get"][
            "parameters"
        ]
    }
    assert {"from", "to", "granularity", "as_of", "limit", "cursor"} <= history_params


async def poll_until(
    client: Client,
    url: str,
    done: Any,
    *,
    within: float,
    params: dict[str, Any] | None = None,
) -> Any:
    """GET until `done(response)`; fail if it takes longer than `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        response = await client.get(url, params=params)
        if done(response):
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not done within {within}s: {response.status_code} {response.text}"
            )
        await asyncio.sleep(0.02)
