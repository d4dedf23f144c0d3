"""Series configuration routes over in-memory ports: status codes, bodies, problems, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.di import Provide
from litestar.testing import AsyncTestClient

from app.api.problems import EXCEPTION_HANDLERS
from app.api.routes import reference_data
from app.domain.series import Series
from tests.unit.services.fakes import FakeDatabase


class FakeReader:
    """`ReferenceDataReader` over the fake database's series."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def series(self, reference_data_id: str) -> Series | None:
        return self._db.state.series.get(reference_data_id)

    async def list_series(self, after: str | None, limit: int) -> list[Series]:
        ordered = sorted(self._db.state.series.values(), key=lambda s: s.reference_data_id)
        return [s for s in ordered if after is None or s.reference_data_id > after][:limit]


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
async def client(db: FakeDatabase) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = Litestar(
        route_handlers=reference_data.ROUTES,
        dependencies={
            "pipeline_db": Provide(lambda: db, sync_to_thread=False),
            "reference_data_reader": Provide(lambda: FakeReader(db), sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def put(client: AsyncTestClient[Litestar], series: str, config: Any) -> Any:
    return await client.put(f"/v1/reference-data/{series}", json=config)


async def test_put_stores_and_returns_the_configuration(
    client: AsyncTestClient[Litestar], db: FakeDatabase
) -> None:
    response = await put(client, "ETH-USD", {"expected_sources": ["a", "b"], "min_sources": 2})

    assert response.status_code == 200
    body = response.json()
    assert body["reference_data_id"] == "ETH-USD"
    assert body["config"]["expected_sources"] == ["a", "b"]
    assert body["config"]["window_seconds"] == 60  # defaults fill what was not sent
    assert body["updated_at"] == "2026-01-15T14:00:05Z"
    assert db.actions() == ["series.created"]
    assert db.state.audit[0].actor == "anonymous"  # no guard: the principal of auth off
    fetched = await client.get("/v1/reference-data/ETH-USD")
    assert fetched.json() == body


@pytest.mark.parametrize(
    ("config", "locs"),
    [
        ({"window_seconds": 0}, [["window_seconds"]]),
        ({"method": "mean"}, [["method"]]),
        ({"windows_seconds": 5}, [["windows_seconds"]]),
        ({"expected_sources": ["a", "a"]}, [["expected_sources", 1]]),
        ({"expected_sources": ["a"], "min_sources": 2}, [["min_sources"]]),
        ({"bounds": [10, 1]}, [["bounds"]]),
        ([1, 2], [[]]),
    ],
)
async def test_invalid_configuration_is_a_422_naming_the_field(
    client: AsyncTestClient[Litestar], db: FakeDatabase, config: Any, locs: list[list[Any]]
) -> None:
    response = await put(client, "ETH-USD", config)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["loc"] for e in response.json()["errors"]] == locs
    assert db.state.series == {}


async def test_put_refuses_a_bad_id_bad_json_and_other_media_types(
    client: AsyncTestClient[Litestar],
) -> None:
    bad_id = await put(client, "eth-usd", {})
    not_json = await client.put(
        "/v1/reference-data/ETH-USD", content=b"{", headers={"content-type": "application/json"}
    )
    text = await client.put(
        "/v1/reference-data/ETH-USD", content=b"{}", headers={"content-type": "text/plain"}
    )

    assert bad_id.status_code == 422
    assert bad_id.json()["errors"][0]["loc"] == ["path", "reference_data_id"]
    assert not_json.status_code == 400
    assert text.status_code == 415


async def test_unknown_series_is_a_404_problem(client: AsyncTestClient[Litestar]) -> None:
    for path in ("/v1/reference-data/NOPE", "/v1/reference-data/not-an-id"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["status"] == 404


async def test_list_pages_through_every_series_in_id_order(
    client: AsyncTestClient[Litestar],
) -> None:
    for series in ("C", "A", "B", "D", "E"):
        assert (await put(client, series, {})).status_code == 200

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/reference-data", params=params)).json()
        seen += [s["reference_data_id"] for s in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == ["A", "B", "C", "D", "E"]
    assert pages == 3


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"cursor": "!!!"}]
)
async def test_list_refuses_bad_limits_and_cursors(
    client: AsyncTestClient[Litestar], params: dict[str, Any]
) -> None:
    response = await client.get("/v1/reference-data", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_options_lists_every_method_of_the_path(db: FakeDatabase) -> None:
    from app.entrypoints.api import allow_every_method

    app = Litestar(
        route_handlers=reference_data.ROUTES,
        dependencies={
            "pipeline_db": Provide(lambda: db, sync_to_thread=False),
            "reference_data_reader": Provide(lambda: FakeReader(db), sync_to_thread=False),
        },
    )
    allow_every_method(app)
    async with AsyncTestClient(app) as client:
        one = await client.options("/v1/reference-data/ETH-USD")
        listing = await client.options("/v1/reference-data")
    assert one.status_code == 204
    assert one.headers["allow"] == "GET, OPTIONS, PUT"
    assert listing.headers["allow"] == "GET, OPTIONS"
