"""Authentication end to end: tokens from `qis dev issuer`'s token endpoint, the audit actor
from the api through Kafka to the worker's audit records, and rate limits shared by two
api processes through Redis."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import msgspec
import pytest
from qis_client import AsyncQisClient, QisClient, Token

from app.api.auth import ADMIN, READ
from app.settings import Settings
from loadtests.auth import auth_headers, bearer_auth
from tests.conftest import unique_series
from tests.e2e.conftest import (
    ISSUER_URL,
    Service,
    bearer,
    free_port,
    issuer,
    service_env,
    wait_ready,
)
from tests.e2e.reconciliation_helpers import current_snap, item, official_value

pytestmark = pytest.mark.e2e
ABC = ["a", "b", "c"]


async def test_the_token_endpoint_grants_only_a_clients_scopes() -> None:
    secret = issuer().clients["qis-local-reader"].secret
    async with httpx.AsyncClient(base_url=ISSUER_URL, timeout=10) as client:
        granted = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": READ},
            auth=("qis-local-reader", secret),
        )
        refused = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": ADMIN},
            auth=("qis-local-reader", secret),
        )
        wrong_secret = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("qis-local-reader", secret + "x"),
        )
        wrong_grant = await client.post(
            "/oauth2/token", data={"grant_type": "password"}, auth=("qis-local-reader", secret)
        )
    assert granted.status_code == 200
    assert granted.json()["token_type"] == "Bearer"
    assert granted.json()["expires_in"] == 3600
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_scope"})
    assert (wrong_secret.status_code, wrong_secret.json()) == (401, {"error": "invalid_client"})
    assert (wrong_grant.status_code, wrong_grant.json()) == (
        400,
        {"error": "unsupported_grant_type"},
    )


async def test_scopes_are_enforced_over_http(api: str) -> None:
    series = unique_series("AUTH")
    config = {"expected_sources": ABC}
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        nobody = await client.put(f"/v1/reference-data/{series}", json=config)
        reader = await client.put(
            f"/v1/reference-data/{series}", json=config, headers=bearer("qis-local-reader")
        )
        ingest_write = await client.post(
            "/v1/observations",
            json={"observations": [item(series, "a", 1.0, current_snap())]},
            headers=bearer("qis-local-reader"),
        )
        reads = await client.get(f"/v1/reference-data/{series}", headers=bearer("qis-local-reader"))
        health = await client.get("/health/ready")
    assert nobody.status_code == 401
    assert nobody.headers["www-authenticate"] == 'Bearer realm="qis"'
    assert reader.status_code == 403
    assert reader.json()["detail"] == "the token does not grant the scope qis/admin"
    assert ingest_write.status_code == 403
    assert reads.status_code == 404  # allowed to read; the series was never created
    assert health.status_code == 200


async def test_the_audit_actor_is_the_tokens_client_through_kafka_to_the_worker(
    api: str, worker: Service, pool: asyncpg.Pool
) -> None:
    series, snap = unique_series("ACTOR"), current_snap()
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        configured = await client.put(
            f"/v1/reference-data/{series}",
            json={"expected_sources": ABC},
            headers=bearer("qis-local-admin", ADMIN),
        )
        assert configured.status_code == 200, configured.text
        posted = await client.post(
            "/v1/observations",
            json={"observations": [item(series, s, 100.0, snap) for s in ABC]},
            headers=bearer("qis-local-ingest"),
        )
        assert posted.status_code == 202, posted.text
        client.headers.update(bearer("qis-local-reader"))
        published = await official_value(client, series, snap)
    assert published["version"] == 1
    rows = await pool.fetch(
        "SELECT action, actor FROM audit_log WHERE entity_id LIKE $1 ORDER BY seq", series + "%"
    )
    actors = {(r["action"], r["actor"]) for r in rows}
    assert ("series.created", "qis-local-admin") in actors
    worker_actions = {action for action, actor in actors if actor == "qis-local-ingest"}
    assert "observations.accepted" in worker_actions
    assert any(action.startswith("official_value") for action in worker_actions), actors
    assert {actor for _, actor in actors} == {"qis-local-admin", "qis-local-ingest"}


@contextlib.contextmanager
def limited_apis(settings: Settings, count: int, **limits: str) -> Iterator[list[str]]:
    """`count` api processes sharing Redis, each with `limits` (QIS_RATE_LIMIT__*)."""
    services: list[Service] = []
    urls: list[str] = []
    try:
        for n in range(count):
            port = free_port()
            env = service_env(
                settings,
                QIS_API__PORT=str(port),
                **{f"QIS_RATE_LIMIT__{k.upper()}": v for k, v in limits.items()},
            )
            service = Service(f"api-limited-{n}", ["api"], env)
            service.start()
            services.append(service)
            urls.append(f"http://127.0.0.1:{port}")
            wait_ready(urls[-1], service)
        yield urls
    finally:
        for service in services:
            assert service.stop() == 0, service.tail()


async def test_the_rate_limit_is_shared_by_two_api_processes(
    settings: Settings, running_stack: None
) -> None:
    client_id = f"rl-{uuid.uuid4().hex[:8]}"  # a bucket no other run shares
    token = issuer().mint(client_id, [READ])
    headers = {"Authorization": f"Bearer {token}"}
    with limited_apis(settings, 2, read_per_second="0.5", read_burst="6") as (one, two):
        async with httpx.AsyncClient(timeout=30, headers=headers) as client:
            statuses = []
            for n in range(12):  # alternate between the two processes
                response = await client.get(f"{(one, two)[n % 2]}/v1/reference-data/NOSUCH")
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert response.headers["content-type"] == "application/problem+json"
                    assert int(response.headers["retry-after"]) >= 1
            other = await client.get(
                f"{one}/v1/reference-data/NOSUCH", headers=bearer("qis-local-reader")
            )
    # 6 tokens in one bucket for both processes (per process it would be 12 x 404); a
    # refill of 0.5/s may add one while the requests run.
    assert statuses.count(404) in (6, 7), statuses
    assert statuses[:6] == [404] * 6
    assert statuses[-1] == 429
    assert other.status_code == 404  # another client has its own bucket


async def test_without_redis_each_process_limits_on_its_own(
    settings: Settings, running_stack: None
) -> None:
    token = issuer().mint(f"rl-{uuid.uuid4().hex[:8]}", [READ])
    headers = {"Authorization": f"Bearer {token}"}
    # Redis at a port nothing listens on: the cache degrades, rate limits go per process.
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    no_redis = msgspec.structs.replace(
        settings, redis=msgspec.structs.replace(settings.redis, url=dead_redis)
    )
    with limited_apis(no_redis, 1, read_per_second="0.5", read_burst="3") as (url,):
        async with httpx.AsyncClient(timeout=30, headers=headers) as client:
            statuses = [
                (await client.get(f"{url}/v1/reference-data/NOSUCH")).status_code for _ in range(5)
            ]
            ready = await client.get(f"{url}/health/ready")
    assert statuses == [404, 404, 404, 429, 429], statuses
    assert ready.json()["degraded"] == ["redis"]


async def test_a_refused_token_is_replaced_by_the_clients_provider(api: str) -> None:
    """qis-client's provider hook: a 401 makes it ask for a new token and retry once."""
    tokens = [
        Token(issuer().mint("qis-local-reader", [READ], exp=1, iat=0)),  # long expired
        Token(issuer().mint("qis-local-reader", [READ])),
    ]
    handed: list[Token] = []

    def provider() -> Token:
        handed.append(tokens[len(handed)])
        return handed[-1]

    async with AsyncQisClient(api, token=provider) as qis:
        page = await qis.list_series_page(limit=1)
    assert len(handed) == 2
    assert isinstance(page.items, list)


def test_the_load_test_hook_gets_tokens_from_the_token_endpoint(api: str) -> None:
    env = {
        "LOADTEST_AUTH_TOKEN_URL": f"{ISSUER_URL}/oauth2/token",
        "LOADTEST_AUTH_CLIENT_ID": "qis-local-reader",
        "LOADTEST_AUTH_CLIENT_SECRET": issuer().clients["qis-local-reader"].secret,
        "LOADTEST_AUTH_SCOPES": READ,
    }
    shared = bearer_auth(env)
    assert shared is not None
    assert bearer_auth(env) is shared  # one token for every simulated user
    listed = httpx.get(f"{api}/v1/reference-data", headers=auth_headers(env), timeout=10)
    with QisClient(api, token=shared) as qis:
        page = qis.list_series_page(limit=1)
    assert listed.status_code == 200
    assert isinstance(page.items, list)
    assert shared.refreshes == 1
