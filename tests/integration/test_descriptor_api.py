"""`GET`/`PUT /v1/reference-data/{id}/descriptor` on the real stack: PostgreSQL (series,
audit trail), Redis (L2) and the document store (FerretDB), plaintext and TLS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.adapters.documentdb import new_client
from app.api.auth import ADMIN, READ
from app.api.routes.descriptors import DISABLED
from app.entrypoints.api import create_app
from app.settings import DocumentSettings, Settings
from tests.auth import bearer
from tests.conftest import unique_series
from tests.e2e.conftest import free_port
from tests.integration.descriptor_helpers import body, descriptor, document_settings


@pytest.fixture(params=["plain", "secure"])
async def documents(
    request: pytest.FixtureRequest, running_stack: None
) -> AsyncIterator[DocumentSettings]:
    documents = document_settings(request.param)
    yield documents
    client = new_client(documents)
    try:
        await client.drop_database(documents.database)
    finally:
        await client.close()


@pytest.fixture
async def api(
    settings: Settings, documents: DocumentSettings
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(msgspec.structs.replace(settings, documents=documents))
    async with AsyncTestClient(app=app) as client:
        yield client


async def new_series(api: AsyncTestClient[Litestar]) -> str:
    series = unique_series("D")
    response = await api.put(
        f"/v1/reference-data/{series}",
        json={"expected_sources": ["bloomberg"]},
        headers=bearer(ADMIN),
    )
    assert response.status_code == 200, response.text
    return series


def url(series: str) -> str:
    return f"/v1/reference-data/{series}/descriptor"


async def audit_rows(pool: asyncpg.Pool, series: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT actor, action, before, after, at FROM audit_log"
        " WHERE entity_type = 'descriptor' AND entity_id = $1 ORDER BY seq",
        series,
    )


async def test_put_then_get_round_trip_audited(
    api: AsyncTestClient[Litestar], pool: asyncpg.Pool
) -> None:
    series = await new_series(api)
    sent = body(descriptor(("bloomberg", "EURUSD Curncy")))

    put = await api.put(url(series), json=sent, headers=bearer(ADMIN))
    assert put.status_code == 200, put.text
    stored = put.json()
    assert stored["reference_data_id"] == series
    assert stored["revision"] == 1
    assert stored["descriptor"] == sent

    got = await api.get(url(series), headers=bearer(READ))
    assert got.status_code == 200
    assert got.json() == stored

    (row,) = await audit_rows(pool, series)
    assert row["action"] == "descriptor.created"
    assert row["actor"] == "qis-local-admin"
    assert row["before"] is None
    assert json.loads(row["after"]) == {"revision": 1, "descriptor": sent}
    # The document was written, then its audit record appended, in one transaction.
    written = datetime.fromisoformat(stored["updated_at"].replace("Z", "+00:00"))
    assert written <= row["at"]

    # The same document again: no new revision, no audit record.
    again = await api.put(url(series), json=sent, headers=bearer(ADMIN))
    assert again.json() == stored
    assert len(await audit_rows(pool, series)) == 1

    changed = body(descriptor(("bloomberg", "EUR Curncy")))
    replaced = await api.put(url(series), json=changed, headers=bearer(ADMIN))
    assert replaced.json()["revision"] == 2
    rows = await audit_rows(pool, series)
    assert [r["action"] for r in rows] == ["descriptor.created", "descriptor.replaced"]
    assert json.loads(rows[1]["before"]) == {"revision": 1, "descriptor": sent}
    assert json.loads(rows[1]["after"])["descriptor"] == changed


async def test_a_put_invalidates_the_cached_read(
    api: AsyncTestClient[Litestar], documents: DocumentSettings
) -> None:
    series = await new_series(api)
    await api.put(url(series), json=body(descriptor(name="first")), headers=bearer(ADMIN))
    first = await api.get(url(series), headers=bearer(READ))
    assert first.json()["descriptor"]["instrument"]["name"] == "first"

    # Changed behind the api's back: the cache still answers with what it read...
    client = new_client(documents)
    try:
        collection = client[documents.database][documents.collection]
        await collection.update_one(
            {"_id": series}, {"$set": {"descriptor.instrument.name": "behind"}}
        )
    finally:
        await client.close()
    cached = await api.get(url(series), headers=bearer(READ))
    assert cached.json()["descriptor"]["instrument"]["name"] == "first"

    # ... and a PUT through the api invalidates it at once.
    put = await api.put(url(series), json=body(descriptor(name="second")), headers=bearer(ADMIN))
    assert put.json()["revision"] == 2
    fresh = await api.get(url(series), headers=bearer(READ))
    assert fresh.json()["descriptor"]["instrument"]["name"] == "second"
    assert fresh.json()["revision"] == 2


async def test_scopes_unknown_series_and_missing_descriptors(
    api: AsyncTestClient[Litestar],
) -> None:
    series = await new_series(api)
    sent = body(descriptor())
    assert (await api.get(url(series))).status_code == 401
    assert (await api.put(url(series), json=sent)).status_code == 401
    forbidden = await api.put(url(series), json=sent, headers=bearer(READ))
    assert forbidden.status_code == 403
    assert forbidden.json()["detail"] == "the token does not grant the scope qis/admin"

    missing = await api.get(url(series), headers=bearer(READ))
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"no descriptor of {series!r}"
    unknown = unique_series("U")
    refused = await api.put(url(unknown), json=sent, headers=bearer(ADMIN))
    assert refused.status_code == 404
    assert "configure it first" in refused.json()["detail"]
    assert (await api.get(url("not an id"), headers=bearer(READ))).status_code == 404


DEEP = "[" * 5000 + '"x"' + "]" * 5000  # nesting no JSON encoder here would write


@pytest.mark.parametrize(
    ("change", "status", "loc"),
    [
        (lambda d: {**d, "instrument": "fx"}, 422, ["instrument"]),
        (
            lambda d: {**d, "venues": [{**d["venues"][0], "primary": "yes"}]},
            422,
            ["venues", 0, "primary"],
        ),
        (lambda d: {**d, "colour": "blue"}, 422, ["colour"]),
        (
            lambda d: {**d, "instrument": {**d["instrument"], "$where": 1}},
            422,
            ["instrument", "$where"],
        ),
        (lambda d: {**d, "tags": "DEEP"}, 422, ["tags", 0]),
        (
            lambda d: {**d, "instrument": {**d["instrument"], "name": "a\u0000b"}},
            422,
            ["instrument", "name"],
        ),
        (
            lambda d: {
                **d,
                "vendor_symbols": [{"vendor": "v", "symbol": f"s{i}"} for i in range(65)],
            },
            422,
            ["vendor_symbols"],
        ),
        (
            lambda d: {**d, "venues": d["venues"] * 2},
            422,
            [["venues", 1, "mic"], ["venues"]],  # the same MIC twice, and two primaries
        ),
        (
            lambda d: {**d, "vendor_symbols": [{"vendor": "v", "symbol": "s", "venue": "XNYS"}]},
            422,
            ["vendor_symbols", 0, "venue"],
        ),
    ],
    ids=[
        "wrong type",
        "wrong nested type",
        "unknown field",
        "operator as field",
        "too deep",
        "NUL",
        "too many",
        "duplicate venue",
        "unknown venue",
    ],
)
async def test_hostile_bodies_are_a_422_naming_the_field(
    api: AsyncTestClient[Litestar], change: Any, status: int, loc: list[Any]
) -> None:
    series = await new_series(api)
    raw = json.dumps(change(body(descriptor(("bloomberg", "X"))))).replace('"DEEP"', DEEP)
    response = await api.put(
        url(series), content=raw, headers={**bearer(ADMIN), "Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    locs = [e["loc"] for e in problem["errors"]]
    assert locs == (loc if isinstance(loc[0], list) else [loc])
    assert (await api.get(url(series), headers=bearer(READ))).status_code == 404  # nothing stored


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"[]", "application/json", 422),
        (b"{}", "text/plain", 415),
        (b'{"instrument": {"name": "' + b"x" * 70_000 + b'"}}', "application/json", 413),
    ],
    ids=["truncated", "not UTF-8", "array", "media type", "too large"],
)
async def test_bodies_that_are_not_a_descriptor(
    api: AsyncTestClient[Litestar], content: bytes, content_type: str, status: int
) -> None:
    series = await new_series(api)
    response = await api.put(
        url(series), content=content, headers={**bearer(ADMIN), "Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.json()["status"] == status


async def test_disabled_routes_say_so(settings: Settings, running_stack: None) -> None:
    app = create_app(msgspec.structs.replace(settings, documents=DocumentSettings(enabled=False)))
    async with AsyncTestClient(app=app) as api:
        series = await new_series(api)
        for response in (
            await api.get(url(series), headers=bearer(READ)),
            await api.put(url(series), json=body(descriptor()), headers=bearer(ADMIN)),
        ):
            assert response.status_code == 404
            assert response.json()["detail"] == DISABLED
        ready = await api.get("/health/ready")
        assert "documentdb" not in ready.json()["checks"]


async def test_a_store_that_does_not_answer_is_a_503(
    settings: Settings, running_stack: None
) -> None:
    down = DocumentSettings(
        enabled=True,
        url=f"mongodb://127.0.0.1:{free_port()}/",
        server_selection_timeout_seconds=0.5,
        connect_timeout_seconds=0.5,
    )
    app = create_app(msgspec.structs.replace(settings, documents=down))
    async with AsyncTestClient(app=app) as api:
        series = await new_series(api)
        got = await api.get(url(series), headers=bearer(READ))
        assert got.status_code == 503
        assert got.headers["retry-after"] == str(settings.api.retry_after_seconds)
        put = await api.put(url(series), json=body(descriptor()), headers=bearer(ADMIN))
        assert put.status_code == 503
        ready = (await api.get("/health/ready")).json()
        assert ready["status"] == "degraded"
        assert ready["degraded"] == ["documentdb"]
