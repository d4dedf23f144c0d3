"""Bearer-token authentication with refresh, as an `httpx.Auth`.

A token provider is a callable returning a `Token` (the access token and when it
expires, in seconds since the epoch, or None when it does not). The client asks for a
token before the first request, again when the current one is within `leeway` seconds
of its expiry, and once more when the server answers 401 (the request is then re-sent
once with the fresh token). Concurrent requests share one refresh.

The async client also accepts a provider returning an awaitable (e.g. an `async def`
that calls an identity provider).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence

import httpx
import msgspec

__all__ = [
    "AsyncTokenProvider",
    "BearerAuth",
    "Token",
    "TokenProvider",
    "client_credentials",
    "static_token",
]


class Token(msgspec.Struct, frozen=True):
    """An access token and its expiry (epoch seconds; None: never expires)."""

    access_token: str
    expires_at: float | None = None


TokenProvider = Callable[[], Token]
AsyncTokenProvider = Callable[[], Token | Awaitable[Token]]


def static_token(access_token: str) -> TokenProvider:
    """A provider handing out one token that never expires."""
    token = Token(access_token)
    return lambda: token


def client_credentials(
    token_url: str,
    client_id: str,
    client_secret: str,
    scopes: Sequence[str] = (),
    *,
    timeout: float = 10.0,
    clock: Callable[[], float] = time.time,
) -> TokenProvider:
    """A provider asking an OAuth2 token endpoint (Amazon Cognito's
    `https://<domain>.auth.<region>.amazoncognito.com/oauth2/token`, or `qis dev issuer`'s
    `http://127.0.0.1:58080/oauth2/token`) for a client-credentials token.

    `scopes` empty asks for every scope the app client may have. A refused request raises
    `httpx.HTTPStatusError`.
    """
    form = {"grant_type": "client_credentials"}
    if scopes:
        form["scope"] = " ".join(scopes)

    def fetch() -> Token:
        response = httpx.post(
            token_url, data=form, auth=(client_id, client_secret), timeout=timeout
        )
        response.raise_for_status()
        body = response.json()
        return Token(str(body["access_token"]), clock() + float(body["expires_in"]))

    return fetch


class BearerAuth(httpx.Auth):
    """Adds `Authorization: Bearer ...`; refreshes before expiry and once on a 401."""

    def __init__(
        self,
        provider: AsyncTokenProvider,
        *,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._provider = provider
        self._leeway = leeway
        self._clock = clock
        self._token: Token | None = None
        self._thread_lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        self.refreshes = 0

    def _fresh(self, token: Token | None) -> bool:
        return token is not None and (
            token.expires_at is None or self._clock() < token.expires_at - self._leeway
        )

    def _stored(self, fetched: object) -> Token:
        if not isinstance(fetched, Token):
            raise TypeError(f"token provider returned {type(fetched).__name__}, not a Token")
        self._token = fetched
        self.refreshes += 1
        return fetched

    def current(self) -> Token:
        """The token requests carry now (fetched when there is none or it is about to
        expire); for callers that need the header outside the client."""
        return self._sync_token()

    # --- sync ----------------------------------------------------------------------------

    def _sync_token(self, rejected: Token | None = None) -> Token:
        with self._thread_lock:
            current = self._token
            if self._fresh(current) and current is not rejected:
                assert current is not None
                return current
            fetched = self._provider()
            if inspect.isawaitable(fetched):
                raise TypeError("an async token provider needs AsyncQisClient")
            return self._stored(fetched)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        token = self._sync_token()
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code == 401:
            token = self._sync_token(rejected=token)
            request.headers["Authorization"] = f"Bearer {token.access_token}"
            yield request

    # --- async ---------------------------------------------------------------------------

    async def _async_token(self, rejected: Token | None = None) -> Token:
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        async with self._async_lock:
            current = self._token
            if self._fresh(current) and current is not rejected:
                assert current is not None
                return current
            fetched = self._provider()
            if inspect.isawaitable(fetched):
                fetched = await fetched
            return self._stored(fetched)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._async_token()
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code == 401:
            token = await self._async_token(rejected=token)
            request.headers["Authorization"] = f"Bearer {token.access_token}"
            yield request
