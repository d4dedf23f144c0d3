"""Cognito access tokens checked with PyJWT: RS256 only, keys from the issuer's JWKS.

The same code checks the tokens of an Amazon Cognito user pool and of `qis dev issuer`
(only the issuer URL differs). A token is accepted when all of these hold:

- its header names `alg: RS256` and a `kid` found in the issuer's JWKS (an RSA key);
- its signature verifies with that key;
- `iss` is the configured issuer; `exp` is in the future, and `nbf` and `iat` are not,
  each within `leeway_seconds`;
- `token_use` is `access` (Cognito's ID tokens are refused) and `client_id` is one of the
  configured app clients (any when none is configured).

Keys are fetched once, then again only when a token names a key id the cached set does
not hold, at most once per `jwks_refresh_seconds`: forged key ids cannot make the api
flood the issuer. The fetch (stdlib urllib, in a thread) happens off the request path's
common case.

A verified token is remembered (bounded, oldest dropped first) until its `exp`: a client
sends the same token for up to an hour, and checking it again (PyJWT's parsing and the
RS256 signature, ~150 us here) would give the same answer until it expires. A remembered
token costs a dictionary look-up and a clock read (benchmarks/results/auth-cost.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt

from app.ports import Principal, Unauthenticated, VerifierUnavailable
from app.settings import AuthSettings

_log = logging.getLogger("qis.auth")
MAX_TOKEN_BYTES = 8192
MAX_REMEMBERED = 10_000
_REQUIRED = ["exp", "iat", "iss", "sub", "token_use", "client_id"]


def fetch_json(url: str, timeout: float) -> Any:
    """GET `url` and decode its JSON body (http(s) for an issuer; file for tests)."""
    if not url.startswith(("https://", "http://", "file://")):
        raise ValueError(f"unsupported JWKS URL scheme: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (scheme checked)
        return json.loads(response.read(1_048_576))


class JwksCache:
    """The issuer's signing keys by key id, refreshed on an unknown id at most once per
    `refresh_seconds` (a failed fetch counts too)."""

    def __init__(
        self,
        url: str,
        *,
        refresh_seconds: float,
        timeout_seconds: float,
        fetch: Callable[[str, float], Any] = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._refresh_seconds = refresh_seconds
        self._timeout = timeout_seconds
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._loaded = False
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key `kid`; None when the issuer does not have it (after at most one fetch)."""
        found = self._keys.get(kid)
        if found is None and self._may_fetch():
            async with self._lock:
                if kid not in self._keys and self._may_fetch():
                    await self.refresh()
            found = self._keys.get(kid)
        if found is None and not self._loaded:
            raise VerifierUnavailable("the token issuer's keys are unavailable")
        return found

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or (
            self._clock() - self._fetched_at >= self._refresh_seconds
        )

    async def refresh(self) -> None:
        """Fetch the key set now; on failure keep the cached keys (raise only if none)."""
        self._fetched_at = self._clock()
        self.fetches += 1
        try:
            document = await asyncio.to_thread(self._fetch, self.url, self._timeout)
            self._keys = _rsa_keys(document)
            self._loaded = True
        except Exception as exc:  # the issuer's failure is not the request's
            _log.warning("JWKS fetch failed", extra={"url": self.url, "error": repr(exc)[:300]})
            if not self._loaded:
                raise VerifierUnavailable("the token issuer's keys are unavailable") from None


def _rsa_keys(document: Any) -> dict[str, jwt.PyJWK]:
    """The RS256 signing keys of a JWKS document, by key id."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        if entry.get("alg", "RS256") != "RS256" or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str):
            continue
        try:
            keys[kid] = jwt.PyJWK(entry, algorithm="RS256")
        except (jwt.PyJWTError, ValueError, TypeError):
            _log.warning("JWKS key skipped: not a usable RSA key", extra={"kid": kid[:64]})
    return keys


class JwtVerifier:
    """`TokenVerifier` for Cognito access tokens (see the module's docstring)."""

    def __init__(
        self,
        settings: AuthSettings,
        keys: JwksCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys or JwksCache(
            settings.jwks_location,
            refresh_seconds=settings.jwks_refresh_seconds,
            timeout_seconds=settings.jwks_timeout_seconds,
        )
        self._issuer = settings.issuer
        self._clients = settings.allowed_clients
        self._leeway = settings.leeway_seconds
        self._options: jwt.types.Options = {"require": _REQUIRED, "verify_aud": False}
        self._clock = clock
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal:
        remembered = self._verified.get(token)
        if remembered is not None:
            if self._clock() < remembered[1] + self._leeway:
                return remembered[0]
            del self._verified[token]
        principal, expires = await self._verify(token)
        if self._clock() >= expires + self._leeway:
            raise Unauthenticated("token expired", expired=True)
        if len(self._verified) >= MAX_REMEMBERED:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, expires)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        if header.get("alg") != "RS256":
            raise Unauthenticated("algorithm is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthenticated("no key id")
        key = await self.keys.key(kid)
        if key is None:
            raise Unauthenticated("unknown key id")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired", expired=True) from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"token rejected: {type(exc).__name__}") from None
        return self._principal(claims), float(claims["exp"])

    def _principal(self, claims: dict[str, Any]) -> Principal:
        if claims.get("token_use") != "access":
            raise Unauthenticated("not an access token")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise Unauthenticated("no client id")
        if self._clients and client_id not in self._clients:
            raise Unauthenticated("client not accepted")
        scope = claims.get("scope", "")
        username = claims.get("username")
        if not isinstance(scope, str) or not (username is None or isinstance(username, str)):
            raise Unauthenticated("bad scope or username claim")
        return Principal(client_id=client_id, username=username, scopes=frozenset(scope.split()))
