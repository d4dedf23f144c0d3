"""Micro-benchmarks of authentication, in process (no I/O): what a request pays.

Run: `.venv/bin/pytest benchmarks/micro/test_auth.py --benchmark-only --benchmark-enable`

- auth-guard: the whole access check (`access_check`, the app's `before_request` hook)
  of a `/v1` route for a token seen before (the steady state: a client reuses its token
  for an hour): header parsing, the remembered verification, the scope check. Rate
  limiting (one Redis round trip) is measured end to end by
  `benchmarks.e2e.query_bench --auth both`.
- auth-verify: the verifier alone, remembered token vs first sight (PyJWT parsing and
  the RS256 signature check, 2048-bit key).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from litestar import Request, get

from app.adapters.jwt_verifier import JwtVerifier
from app.api.auth import READ, Gate, access_check
from app.entrypoints.dev_issuer import LocalIssuer
from app.settings import AuthSettings

ISSUER = "http://127.0.0.1:9/bench"


@get("/v1/x", opt={"scope": READ}, sync_to_thread=False)
def route() -> None:
    return None


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    state: Path = tmp_path_factory.mktemp("bench-issuer")
    local = LocalIssuer(state, ISSUER)
    (state / "jwks.json").write_text(json.dumps(local.jwks()))
    return local


@pytest.fixture(scope="module")
def verifier(issuer: LocalIssuer) -> JwtVerifier:
    return JwtVerifier(
        AuthSettings(issuer=ISSUER, jwks_url=(issuer.state_dir / "jwks.json").as_uri())
    )


def connection(token: str) -> Request[Any, Any, Any]:
    scope: Any = {
        "type": "http",
        "method": "GET",
        "path": "/v1/x",
        "raw_path": b"/v1/x",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
        "state": {},
        "route_handler": route,
    }
    return Request(scope)


@pytest.mark.benchmark(group="auth-guard")
def test_guard_remembered_token(benchmark: Any, issuer: LocalIssuer, verifier: JwtVerifier) -> None:
    check = access_check(lambda: Gate(verifier, None))
    token = issuer.mint("bench", [READ])
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(check(connection(token)))  # verified once

        def one() -> None:
            coroutine = check(connection(token))
            try:
                coroutine.send(None)
            except StopIteration:
                return
            raise AssertionError("the check waited on I/O")

        benchmark(one)
    finally:
        loop.close()


def _run(verifier: JwtVerifier, token: str, remembered: bool) -> None:
    coroutine = verifier.verify(token) if remembered else verifier._verify(token)
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise AssertionError("the verifier waited on I/O")


@pytest.mark.benchmark(group="auth-verify")
def test_verify_remembered(benchmark: Any, issuer: LocalIssuer, verifier: JwtVerifier) -> None:
    token = issuer.mint("bench", [READ])
    asyncio.run(verifier.verify(token))
    benchmark(_run, verifier, token, True)


@pytest.mark.benchmark(group="auth-verify")
def test_verify_first_sight(benchmark: Any, issuer: LocalIssuer, verifier: JwtVerifier) -> None:
    token = issuer.mint("bench", [READ])
    asyncio.run(verifier.verify(token))  # keys fetched
    benchmark(_run, verifier, token, False)
