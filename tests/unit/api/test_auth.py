"""Authentication and authorisation at the edge: every bad token is a 401, a missing
scope a 403, an empty bucket a 429; problem+json, nothing echoed, never a 5xx.

The routes are the real ones over in-memory ports; tokens are signed by the local
issuer's code (`LocalIssuer`) or forged here; the verifier is the real one reading the
issuer's JWKS from a file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from app.adapters.jwt_verifier import JwksCache, JwtVerifier
from app.api.auth import ADMIN, INGEST, READ, Gate, access_check, requires, unguarded_routes
from app.entrypoints.dev_issuer import LocalIssuer
from app.settings import AuthSettings
from tests.unit.api.test_bounds_at_the_edge import MemoryLog, edge_app
from tests.unit.services.fakes import FakeDatabase

ISSUER = "http://issuer.test/pool"
SERIES = "/v1/reference-data/AUTH.TEST"
CONFIG = {"expected_sources": ["a", "b"], "min_sources": 1}


class CountingLimiter:
    """Allows `allowed` requests, then asks for a 2.5 s wait; records what it was asked."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.calls: list[tuple[str, str]] = []

    async def acquire(self, client_id: str, scope: str) -> float:
        self.calls.append((client_id, scope))
        return 0.0 if len(self.calls) <= self.allowed else 2.5


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    state = tmp_path_factory.mktemp("issuer")
    local = LocalIssuer(state, ISSUER)
    (state / "jwks.json").write_text(json.dumps(local.jwks()))
    return local


def auth_settings(issuer: LocalIssuer, **changes: Any) -> AuthSettings:
    return AuthSettings(
        issuer=ISSUER, jwks_url=(issuer.state_dir / "jwks.json").as_uri(), **changes
    )


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


def app_with(gate: Gate, db: FakeDatabase) -> Litestar:
    return edge_app(MemoryLog(), db, access_check(lambda: gate))


@pytest.fixture
async def client(issuer: LocalIssuer, db: FakeDatabase) -> AsyncIterator[AsyncTestClient[Litestar]]:
    gate = Gate(JwtVerifier(auth_settings(issuer)), None)
    async with AsyncTestClient(app_with(gate, db)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


def claims_of(issuer: LocalIssuer, **changes: Any) -> dict[str, Any]:
    token = issuer.mint("qis-local-admin", [READ, INGEST, ADMIN], **changes)
    return jwt.decode(token, options={"verify_signature": False})


def assert_problem(response: Any, status: int, *, token: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if token:
        # Nothing of the token, its parts or its claims comes back.
        for part in token.split("."):
            if len(part) > 8:
                assert part not in response.text
    assert "BEGIN" not in response.text
    assert '"kid"' not in response.text
    return body


def forged_tokens(issuer: LocalIssuer) -> dict[str, str]:
    """Every refused token shape of the issue, by name."""
    now = int(time.time())
    other_key = LocalIssuer(issuer.state_dir / "other", ISSUER)
    public_pem = issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_input = unsigned({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}, claims_of(issuer))
    hs_signature = hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest()
    valid = issuer.mint("qis-local-reader", [READ])
    head, payload, signature = valid.split(".")
    raised = json.loads(base64.urlsafe_b64decode(payload + "=="))
    raised["scope"] = f"{READ} {ADMIN}"
    return {
        "malformed": "not-a-jwt",
        "three garbage segments": "abc.def.ghi",
        "expired": issuer.mint("qis-local-admin", [READ], exp=now - 60, iat=now - 3660),
        "not yet valid (nbf)": issuer.mint("qis-local-admin", [READ], nbf=now + 600),
        "issued in the future (iat)": issuer.mint("qis-local-admin", [READ], iat=now + 600),
        "wrong issuer": issuer.mint("qis-local-admin", [READ], iss="http://evil.test/pool"),
        "id token": issuer.mint("qis-local-admin", [READ], token_use="id"),
        "no token_use": issuer.mint("qis-local-admin", [READ], token_use=None),
        "no client_id": issuer.mint("qis-local-admin", [READ], client_id=None),
        "unknown kid": jwt.encode(
            claims_of(issuer), other_key.private_key, "RS256", headers={"kid": "forged-kid"}
        ),
        "right kid, other key": jwt.encode(
            claims_of(issuer), other_key.private_key, "RS256", headers={"kid": issuer.kid}
        ),
        "alg none": unsigned({"alg": "none", "typ": "JWT", "kid": issuer.kid}, claims_of(issuer))
        + ".",
        "HS256 signed with the public key": f"{hs_input}.{b64(hs_signature)}",
        "tampered payload": f"{head}.{b64(json.dumps(raised).encode())}.{signature}",
        "signature stripped": f"{head}.{payload}.",
        "huge": "a" * 20_000,
    }


@pytest.mark.parametrize(
    "name",
    [
        "malformed",
        "three garbage segments",
        "expired",
        "not yet valid (nbf)",
        "issued in the future (iat)",
        "wrong issuer",
        "id token",
        "no token_use",
        "no client_id",
        "unknown kid",
        "right kid, other key",
        "alg none",
        "HS256 signed with the public key",
        "tampered payload",
        "signature stripped",
        "huge",
    ],
)
async def test_a_bad_token_is_a_401_on_every_method(
    client: AsyncTestClient[Litestar], issuer: LocalIssuer, db: FakeDatabase, name: str
) -> None:
    token = forged_tokens(issuer)[name]
    responses = [
        await client.get(SERIES, headers=bearer(token)),
        await client.put(SERIES, json=CONFIG, headers=bearer(token)),
        await client.post("/v1/observations", content=b"{}", headers=bearer(token)),
    ]
    for response in responses:
        body = assert_problem(response, 401, token=token)
        assert response.headers["www-authenticate"] == 'Bearer realm="qis", error="invalid_token"'
        expected = "bearer token expired" if name == "expired" else "bearer token is not valid"
        assert body["detail"] == expected
    assert db.state.series == {}  # nothing was written


async def test_a_token_from_another_client_is_refused_when_clients_are_listed(
    issuer: LocalIssuer, db: FakeDatabase
) -> None:
    gate = Gate(JwtVerifier(auth_settings(issuer, client_ids="qis-local-admin, other")), None)
    async with AsyncTestClient(app_with(gate, db)) as client:
        listed = await client.get(SERIES, headers=bearer(issuer.mint("other", [READ])))
        unlisted = issuer.mint("qis-local-reader", [READ])
        refused = await client.get(SERIES, headers=bearer(unlisted))
    assert listed.status_code == 404  # authenticated: the series does not exist
    assert_problem(refused, 401, token=unlisted)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer   ", "Basic cWlzOnNlY3JldA==", "Token abc", "bearer"],
)
async def test_no_bearer_token_is_a_401_with_a_challenge(
    client: AsyncTestClient[Litestar], authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get(SERIES, headers=headers)
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith('Bearer realm="qis"')
    assert body["detail"] in {"missing bearer token", "expected an Authorization: Bearer token"}


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("POST", "/v1/observations", INGEST),
        ("GET", SERIES, READ),
        ("GET", "/v1/reference-data", READ),
        ("GET", f"{SERIES}/official-values/2026-01-15T14:00:00Z", READ),
        ("GET", f"{SERIES}/official-values/2026-01-15T14:00:00Z/versions", READ),
        ("GET", f"{SERIES}/official-values", READ),
        ("GET", f"{SERIES}/observations", READ),
        ("GET", f"{SERIES}/quality", READ),
        ("PUT", SERIES, ADMIN),
    ],
)
async def test_each_route_needs_its_scope(
    client: AsyncTestClient[Litestar], issuer: LocalIssuer, method: str, path: str, needed: str
) -> None:
    for scopes in ([s for s in (INGEST, READ, ADMIN) if s != needed], []):
        token = issuer.mint("qis-local-admin", scopes)
        response = await client.request(method, path, headers=bearer(token), json=CONFIG)
        body = assert_problem(response, 403, token=token)
        assert body["detail"] == f"the token does not grant the scope {needed}"
        assert response.headers["www-authenticate"] == (
            f'Bearer realm="qis", error="insufficient_scope", scope="{needed}"'
        )
    token = issuer.mint("qis-local-admin", [needed])
    allowed = await client.request(method, path, headers=bearer(token), json=CONFIG)
    # Past the guard: the handler answers (the official-value routes reach the query
    # service, which here has no data and refuses to be asked: a 500 proves it was).
    assert allowed.status_code not in (401, 403, 429), allowed.text


async def test_the_audit_actor_of_a_change_is_the_tokens_client(
    client: AsyncTestClient[Litestar], issuer: LocalIssuer, db: FakeDatabase
) -> None:
    token = issuer.mint("qis-local-admin", [ADMIN], username="alice")
    response = await client.put(SERIES, json=CONFIG, headers=bearer(token))
    assert response.status_code == 200, response.text
    actors = [entry.actor for entry in db.state.audit]
    assert actors == ["qis-local-admin/alice"]


async def test_health_and_the_document_need_no_token(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "/v1/observations" in response.json()["paths"]


async def test_an_empty_bucket_is_a_429_with_retry_after(
    issuer: LocalIssuer, db: FakeDatabase
) -> None:
    limiter = CountingLimiter(allowed=2)
    gate = Gate(JwtVerifier(auth_settings(issuer)), limiter)
    token = issuer.mint("qis-local-reader", [READ])
    async with AsyncTestClient(app_with(gate, db)) as client:
        statuses = [(await client.get(SERIES, headers=bearer(token))) for _ in range(3)]
    assert [r.status_code for r in statuses] == [404, 404, 429]
    body = assert_problem(statuses[2], 429, token=token)
    assert body["detail"] == "rate limit of qis/read exceeded; retry later"
    assert statuses[2].headers["retry-after"] == "3"
    assert limiter.calls == [("qis-local-reader", READ)] * 3


async def test_forged_key_ids_fetch_the_keys_at_most_once_per_interval(
    issuer: LocalIssuer,
) -> None:
    clock = [1000.0]
    keys = JwksCache(
        (issuer.state_dir / "jwks.json").as_uri(),
        refresh_seconds=60,
        timeout_seconds=1,
        clock=lambda: clock[0],
    )
    verifier = JwtVerifier(auth_settings(issuer), keys)
    good = issuer.mint("qis-local-admin", [READ])
    assert (await verifier.verify(good)).client_id == "qis-local-admin"
    assert keys.fetches == 1
    other = LocalIssuer(issuer.state_dir / "other", ISSUER)
    clock[0] += 61  # the keys are a minute old: one unknown kid may fetch them again
    for n in range(50):
        forged = jwt.encode(claims_of(issuer), other.private_key, "RS256", headers={"kid": f"k{n}"})
        with pytest.raises(Exception, match="unknown key id"):
            await verifier.verify(forged)
    assert keys.fetches == 2  # the first forged kid fetched once; the other 49 did not
    clock[0] += 30
    with pytest.raises(Exception, match="unknown key id"):
        await verifier.verify(forged)
    assert keys.fetches == 2
    clock[0] += 31
    with pytest.raises(Exception, match="unknown key id"):
        await verifier.verify(forged)
    assert keys.fetches == 3
    assert (await verifier.verify(good)).client_id == "qis-local-admin"  # remembered


async def test_a_remembered_token_still_expires(issuer: LocalIssuer) -> None:
    now = [time.time()]
    verifier = JwtVerifier(auth_settings(issuer, leeway_seconds=5), clock=lambda: now[0])
    token = issuer.mint("qis-local-admin", [READ], seconds=60)
    assert (await verifier.verify(token)).scopes == frozenset({READ})
    now[0] += 30
    assert (await verifier.verify(token)).client_id == "qis-local-admin"
    now[0] += 40  # past exp + leeway: checked again, and PyJWT's clock says it is valid,
    # so the verifier's own clock must refuse it before PyJWT is asked
    with pytest.raises(Exception, match="expired"):
        await verifier.verify(token)


def test_every_v1_route_names_a_scope() -> None:
    assert unguarded_routes(app_with(Gate(None, None), FakeDatabase())) == []


def test_a_route_whose_own_hook_would_replace_the_check_is_unguarded() -> None:
    async def other(_: Any) -> None:
        return None

    @get("/v1/own-hook", **requires(READ), before_request=other, sync_to_thread=False)
    def own_hook() -> None:
        return None

    @get("/v1/checked", **requires(READ), sync_to_thread=False)
    def checked() -> None:
        return None

    app = Litestar(
        route_handlers=[own_hook, checked], before_request=access_check(lambda: Gate(None, None))
    )
    assert unguarded_routes(app) == ["GET /v1/own-hook"]
    assert unguarded_routes(Litestar(route_handlers=[checked])) == ["GET /v1/checked"]


def test_issuer_state_is_kept_across_starts(tmp_path: Path) -> None:
    first = LocalIssuer(tmp_path, ISSUER)
    second = LocalIssuer(tmp_path, ISSUER)
    assert first.kid == second.kid
    assert first.clients == second.clients
    assert oct((tmp_path / "issuer-key.pem").stat().st_mode)[-3:] == "600"
    claims = jwt.decode(
        first.mint("qis-local-ingest", [INGEST]), options={"verify_signature": False}
    )
    assert set(claims) == {
        "sub", "token_use", "scope", "auth_time", "iss", "exp", "iat", "version", "jti",
        "client_id",
    }  # fmt: skip
    assert claims["sub"] == claims["client_id"] == "qis-local-ingest"
