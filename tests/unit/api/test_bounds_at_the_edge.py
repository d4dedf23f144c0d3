"""Issue 12's reproducers and the bounds of app/domain/bounds.py, through the HTTP layer.

Each request goes through a Litestar app with the real routes, exception handlers and
problem rendering; the ingestion log, series store and query service are in memory.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.di import Provide
from litestar.testing import AsyncTestClient

from app.api.problems import EXCEPTION_HANDLERS
from app.api.routes import observations, query, reference_data
from app.domain.observation import ObservationsRecorded
from app.services.cache import CachePolicy
from app.services.query import QueryService
from app.telemetry.metrics import noop_metrics
from tests.unit.api.test_reference_data_routes import FakeReader
from tests.unit.services.fakes import FakeDatabase

GOOD: dict[str, Any] = {
    "reference_data_id": "ETH-USD",
    "source": "kraken",
    "snap": "2026-01-15T14:00:00Z",
    "value": 3301.25,
    "observed_at": "2026-01-15T14:00:00.120Z",
}


class MemoryLog:
    def __init__(self) -> None:
        self.records: list[ObservationsRecorded] = []

    async def append(
        self, records: Sequence[ObservationsRecorded], actor: str | None = None
    ) -> None:
        self.records.extend(records)


class NoQueries:
    """Every query here must be refused before it reaches the service."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the query service was asked for {name}")


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


def edge_app(log: MemoryLog, db: FakeDatabase, before_request: Any = None) -> Litestar:
    """The /v1 routes over in-memory ports (with a `before_request` hook, e.g.
    app/api/auth.py's `access_check`)."""
    limit = observations.InFlightLimit(8)
    return Litestar(
        route_handlers=[observations.post_observations, *query.ROUTES, *reference_data.ROUTES],
        dependencies={
            "ingestion_log": Provide(lambda: log, sync_to_thread=False),
            "in_flight": Provide(lambda: limit, sync_to_thread=False),
            "retry_after_seconds": Provide(lambda: 1, sync_to_thread=False),
            "metrics": Provide(lambda: noop_metrics("api"), sync_to_thread=False),
            "query_service": Provide(
                lambda: QueryService(NoQueries(), NoQueries(), CachePolicy()),
                sync_to_thread=False,
            ),
            "pipeline_db": Provide(lambda: db, sync_to_thread=False),
            "reference_data_reader": Provide(lambda: FakeReader(db), sync_to_thread=False),
        },
        before_request=before_request,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client(log: MemoryLog, db: FakeDatabase) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(edge_app(log, db)) as test_client:
        yield test_client


async def post(client: AsyncTestClient[Litestar], *items: dict[str, Any]) -> Any:
    return await client.post(
        "/v1/observations",
        content=msgspec.json.encode({"observations": list(items)}),
        headers={"content-type": "application/json"},
    )


def errors_of(response: Any) -> list[tuple[list[Any], str]]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return [(e["loc"], e["msg"]) for e in response.json()["errors"]]


async def test_reproducer_1_year_one_is_a_422_naming_both_timestamps(
    client: AsyncTestClient[Litestar], log: MemoryLog
) -> None:
    response = await post(
        client,
        {
            "reference_data_id": "0",
            "source": "0",
            "snap": "0005-04-05T06:00:00Z",
            "observed_at": "0001-01-01T00:00:00Z",
            "value": 0.0,
        },
    )

    assert response.status_code == 422
    range_msg = "must be from 1970-01-01T00:00:00Z inclusive to 2200-01-01T00:00:00Z exclusive"
    assert errors_of(response) == [
        (["observations", 0, "snap"], range_msg),
        (["observations", 0, "observed_at"], range_msg),
    ]
    assert response.json()["detail"] == "1 invalid observation(s); nothing was accepted"
    assert log.records == []


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"source": "a\u0000b"}, ["observations", 1, "source"]),
        ({"observation_id": "id\u0000"}, ["observations", 1, "observation_id"]),
        ({"attributes": {"bid\u0000": 1.0}}, ["observations", 1, "attributes", "bid\u0000"]),
        ({"attributes": {"venue": "\u0000"}}, ["observations", 1, "attributes", "venue"]),
    ],
)
async def test_reproducer_2_nul_in_any_string_is_a_422_at_its_place(
    client: AsyncTestClient[Litestar], log: MemoryLog, change: dict[str, Any], loc: list[Any]
) -> None:
    response = await post(client, GOOD, GOOD | change)

    assert response.status_code == 422
    [(found_loc, msg)] = errors_of(response)
    assert found_loc == loc
    assert "NUL" in msg
    assert log.records == []


async def test_every_bad_item_is_listed_with_msgspec_and_bounds_errors_together(
    client: AsyncTestClient[Litestar], log: MemoryLog
) -> None:
    response = await post(
        client,
        GOOD | {"source": ""},  # a msgspec error: the item-by-item path
        GOOD,
        GOOD | {"snap": "2200-01-01T00:00:00Z", "source": "x\u0000"},
        GOOD | {"observed_at": "2026-01-15T14:00:00+16:00"},
    )

    assert response.status_code == 422
    assert [loc for loc, _ in errors_of(response)] == [
        ["observations", 0, "source"],
        ["observations", 2, "snap"],
        ["observations", 2, "source"],
        ["observations", 3, "observed_at"],
    ]
    assert response.json()["detail"].startswith("3 invalid observation(s)")
    assert log.records == []


@pytest.mark.parametrize(
    "stamps",
    [
        ("1970-01-01T00:00:00Z", "2199-12-31T23:59:59.999999Z"),
        ("1970-01-01T15:59:00+15:59", "2199-12-31T08:00:00-15:59"),
        ("2026-01-15T14:00:00+14:00", "2026-01-15T14:00:00-12:00"),
    ],
)
async def test_the_edges_of_the_range_are_accepted(
    client: AsyncTestClient[Litestar], log: MemoryLog, stamps: tuple[str, str]
) -> None:
    snap, observed_at = stamps
    response = await post(
        client, GOOD | {"snap": snap, "observed_at": observed_at, "source": "a\\u0000"}
    )

    assert response.status_code == 202, response.text
    [record] = log.records
    assert record.observations[0].source == "a\\u0000"  # a backslash, not a NUL
    assert msgspec.json.encode(record.observations[0].snap).decode().strip('"') == snap.replace(
        "+00:00", "Z"
    )


@pytest.mark.parametrize(
    ("snap", "fragment"),
    [
        ("1969-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z inclusive"),
        ("2200-01-01T00:00:00Z", "2200-01-01T00:00:00Z exclusive"),
        ("1970-01-01T15:59:00+16:00", "+16:00"),
        ("2026-01-15T14:00:00-18:00", "-18:00"),
        ("1970-01-01T00:00:00+00:01", "1970-01-01T00:00:00Z inclusive"),
    ],
)
async def test_just_outside_the_range_is_refused(
    client: AsyncTestClient[Litestar], log: MemoryLog, snap: str, fragment: str
) -> None:
    response = await post(client, GOOD | {"snap": snap})

    assert response.status_code == 422
    [(loc, msg)] = errors_of(response)
    assert loc == ["observations", 0, "snap"]
    assert fragment in msg
    assert log.records == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"observations": [{"reference_data_id": "ETH-USD", "source": "\\ud800"}]}',
        b'{"observations": [{"reference_data_id": "ETH-USD", "source": "\xed\xa0\x80"}]}',
        b'{"observations": [{"reference_data_id": "ETH-USD", "source": "\xff"}]}',
    ],
)
async def test_lone_surrogates_and_invalid_utf8_are_not_json(
    client: AsyncTestClient[Litestar], raw: bytes
) -> None:
    response = await client.post(
        "/v1/observations", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body is not valid JSON")


async def test_reproducer_3_nul_in_a_configured_source_is_a_422(
    client: AsyncTestClient[Litestar], db: FakeDatabase
) -> None:
    response = await client.put(
        "/v1/reference-data/ETH-USD",
        json={"expected_sources": ["a\u0000", "b"], "priority": ["b", "\u0000"]},
    )

    assert response.status_code == 422
    assert errors_of(response) == [
        (["expected_sources", 0], "must not contain a NUL character (U+0000)"),
        (["priority", 1], "must not contain a NUL character (U+0000)"),
    ]
    assert db.state.series == {}


@pytest.mark.parametrize(
    ("config", "loc"),
    [
        ({"max_jump_pct": 1e7}, ["max_jump_pct"]),
        ({"bounds": ["INF", None]}, ["bounds", 0]),
        ({"staleness_seconds": 30 * 86400 + 1}, ["staleness_seconds"]),
        ({"window_seconds": 7 * 86400 + 1}, ["window_seconds"]),
        ({"precision": 13}, ["precision"]),
    ],
)
async def test_configured_numbers_are_bounded(
    client: AsyncTestClient[Litestar], config: dict[str, Any], loc: list[Any]
) -> None:
    response = await client.put(
        "/v1/reference-data/ETH-USD",
        content=msgspec.json.encode(config).replace(b'"INF"', b"1e999"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert [found for found, _ in errors_of(response)] == [loc]


async def test_invalid_utf8_in_a_configuration_is_not_json(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.put(
        "/v1/reference-data/ETH-USD",
        content=b'{"expected_sources": ["\xff"]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("/official-values/0001-01-01T00:00:00+01:00", {}, ["path", "snap"]),
        ("/official-values/2200-01-01T00:00:00Z/versions", {}, ["path", "snap"]),
        (
            "/official-values/2026-01-15T14:00:00Z",
            {"as_of": "9999-12-31T23:59:59-15:00"},
            ["query", "as_of"],
        ),
        (
            "/official-values",
            {"from": "1969-12-31T23:59:59Z", "to": "2026-01-01T00:00:00Z"},
            ["query", "from"],
        ),
        ("/observations", {"snap": "2026-01-15T14:00:00+18:00"}, ["query", "snap"]),
        (
            "/quality",
            {"from": "2026-01-01T00:00:00Z", "to": "2200-01-01T00:00:01Z"},
            ["query", "to"],
        ),
    ],
)
async def test_query_timestamps_outside_the_range_are_a_400(
    client: AsyncTestClient[Litestar], path: str, params: dict[str, str], loc: list[str]
) -> None:
    response = await client.get(f"/v1/reference-data/ETH-USD{path}", params=params)

    assert response.status_code == 400, response.text
    [(found, msg)] = errors_of(response)
    assert found == loc
    assert "1970" in msg or "offset" in msg


async def test_a_version_beyond_postgresql_integer_is_a_400(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get(
        "/v1/reference-data/ETH-USD/official-values/2026-01-15T14:00:00Z",
        params={"version": str(2**31)},
    )
    assert response.status_code == 400
    assert errors_of(response)[0][0] == ["query", "version"]


def forged(position: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(position)).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        # A naive start used to meet an aware `from` in a comparison: TypeError, 500.
        (
            "/official-values?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
            {"start": "2026-01-15T14:00:00"},
        ),
        (
            "/observations?snap=2026-01-15T14:00:00Z",
            {"received_at": "2026-01-15T14:00:00Z", "observation_id": "a\u0000"},
        ),
        (
            "/observations?snap=2026-01-15T14:00:00Z",
            {"received_at": "0001-01-01T00:00:00+01:00", "observation_id": "a"},
        ),
        (
            "/observations?snap=2026-01-15T14:00:00Z",
            {"received_at": "2026-01-15T14:00:00", "observation_id": "a"},
        ),
    ],
)
async def test_a_forged_cursor_is_a_400_before_any_query(
    client: AsyncTestClient[Litestar], path: str, cursor: dict[str, str]
) -> None:
    response = await client.get(f"/v1/reference-data/ETH-USD{path}&cursor={forged(cursor)}")

    assert response.status_code == 400, response.text
    assert errors_of(response) == [(["query", "cursor"], "not a cursor this service issued")]
