"""Readiness reflects the real dependencies: 200 with all up, 503 naming a required one that
is down, 200 "degraded" naming Redis (only a cache) when it is down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from app.entrypoints.api import create_app
from app.settings import Settings
from tests.stack import stack


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def test_live_checks_nothing(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_with_all_three_up(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"postgres": "ok", "kafka": "ok", "redis": "ok"}
    assert body["failing"] == []
    assert body["degraded"] == []


async def test_ready_names_redis_as_degraded_when_it_is_down(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    # Redis is only the L2 cache (reads fall back to PostgreSQL): still 200, but degraded.
    stack("down", "redis")
    try:
        response = await client.get("/health/ready")
    finally:
        stack("up", "redis")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["degraded"] == ["redis"]
    assert body["failing"] == []
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["kafka"] == "ok"
    assert body["checks"]["redis"].startswith("error")
    # And it recovers once Redis is back.
    again = await client.get("/health/ready")
    assert again.status_code == 200
    assert again.json()["status"] == "ready"


async def test_openapi_document_lists_the_routes(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/health/live", "/health/ready", "/v1/observations"} <= set(paths)
    post = paths["/v1/observations"]["post"]
    assert set(post["responses"]) == {
        *("202", "400", "401", "403", "413", "415", "422", "429", "500", "503")
    }
    assert post["security"] == [{"cognito": ["qis/ingest"]}]
    assert "security" not in paths["/health/ready"]["get"]
    flows = response.json()["components"]["securitySchemes"]["cognito"]["flows"]
    assert set(flows["clientCredentials"]["scopes"]) == {"qis/ingest", "qis/read", "qis/admin"}
    assert post["responses"]["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ObservationSubmission"}
    schemas = response.json()["components"]["schemas"]
    batch = schemas["ObservationSubmission"]["properties"]["observations"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 5000)
    item = schemas["SubmittedObservation"]
    assert item["additionalProperties"] is False
    assert item["properties"]["reference_data_id"]["pattern"] == "^[A-Z0-9][A-Z0-9._:-]{0,63}$"
    assert set(item["required"]) == {"reference_data_id", "source", "snap", "value", "observed_at"}
