"""A service a command needs does not answer: one line and exit 2, not a traceback.

Commands open their connections through `reach(...)` (or `postgres(...)`/`kafka(...)`),
which turns the connection failure into `Unreachable`, whose text is the line `qis`
prints: `qis: cannot reach PostgreSQL at 127.0.0.1:1 (connection refused)`. Only the
opening of a connection is wrapped: a failure later on is the command's own business
(the worker retries, for one).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

T = TypeVar("T")
EXIT_UNREACHABLE = 2


class Unreachable(Exception):
    """`service` at `where` could not be reached; `str()` is the line to print."""

    def __init__(self, service: str, where: str, reason: str) -> None:
        super().__init__(f"cannot reach {service} at {where} ({reason})")
        self.service, self.where, self.reason = service, where, reason


def reason(exc: BaseException) -> str:
    """A few words on why a connection failed."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError | KafkaTimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return f"TLS failed: {exc}"
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return f"login refused: {exc}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"no such database: {exc}"
    if isinstance(exc, KafkaConnectionError):
        return "no broker answered"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# What a failed connection raises: the socket's errors, asyncpg's refusals at connect
# (wrong password, unknown database), and aiokafka's.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    KafkaError,
)


async def reach(opening: Awaitable[T], service: str, where: str) -> T:
    """`await opening`, with a connection failure raised as `Unreachable`."""
    try:
        return await opening
    except CONNECTION_ERRORS as exc:
        raise Unreachable(service, where, reason(exc)) from exc


def postgres_address(dsn: str) -> str:
    """`host:port` of a DSN (no user, no password), or `the DSN's host` when unparsable."""
    try:
        parts = urlsplit(dsn)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "the configured DSN"
    return f"{host or 'localhost'}:{port or 5432}"


async def postgres(opening: Awaitable[T], dsn: str) -> T:
    """`reach` for a PostgreSQL connection or pool opened with `dsn`."""
    return await reach(opening, "PostgreSQL", postgres_address(dsn))


async def kafka(opening: Awaitable[T], bootstrap_servers: str) -> T:
    """`reach` for a Kafka client's start (or a first request)."""
    return await reach(opening, "Kafka", bootstrap_servers)


def find(exc: BaseException) -> Unreachable | None:
    """The `Unreachable` in `exc`, its causes or its exception group, if any."""
    seen: set[int] = set()

    def walk(e: BaseException | None) -> Iterator[BaseException]:
        while e is not None and id(e) not in seen:
            seen.add(id(e))
            yield e
            if isinstance(e, BaseExceptionGroup):
                for inner in e.exceptions:
                    yield from walk(inner)
            e = e.__cause__ or e.__context__

    return next((e for e in walk(exc) if isinstance(e, Unreachable)), None)


ASGIApp = Callable[..., Awaitable[None]]


def quiet_startup_failure(app: ASGIApp, failed: Callable[[Unreachable], None]) -> ASGIApp:
    """`app` whose lifespan startup, when it fails on an `Unreachable`, hands it to
    `failed` instead of having the server log the whole traceback; other failures pass
    through unchanged."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "lifespan":
            await app(scope, receive, send)
            return
        held: list[dict[str, Any]] = []

        async def hold_failure(message: dict[str, Any]) -> None:
            if message.get("type") == "lifespan.startup.failed":
                held.append(message)
                return
            await send(message)

        try:
            await app(scope, receive, hold_failure)
        except BaseException as exc:
            unreachable = find(exc)
            if held:
                if unreachable is not None:
                    failed(unreachable)
                    await send({"type": "lifespan.startup.failed", "message": ""})
                else:
                    await send(held[0])
            raise
        for message in held:
            await send(message)

    return wrapped
