"""asyncpg pools for the writer and reader endpoints, single connections, and health.

Every connection the service opens goes through `connect_options`: TLS as `DbSettings`
says (verify-full: the CA bundle and the host name are checked) and the password from
the DSN, from Secrets Manager or as a fresh RDS IAM token (docs/secure-connections.md).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from app.adapters.aws_auth import shared_rds_token, shared_secret
from app.settings import DbSettings


@functools.lru_cache(maxsize=8)
def _verifying_context(root_cert: str, check_hostname: bool) -> ssl.SSLContext:
    # Shared by every connection of the process: loading the system CA store into a new
    # context costs tens of milliseconds of blocked event loop.
    context = ssl.create_default_context(cafile=root_cert or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    return context


def ssl_option(settings: DbSettings) -> ssl.SSLContext | str | None:
    """asyncpg's `ssl` argument: None leaves it to the DSN; verify-ca/verify-full get a
    context that checks the server's chain against `ssl_root_cert` (and the host name)."""
    if settings.ssl_mode in ("verify-ca", "verify-full"):
        return _verifying_context(settings.ssl_root_cert, settings.ssl_mode == "verify-full")
    return settings.ssl_mode or None


def _endpoint(dsn: str) -> tuple[str, int, str]:
    parts = urlsplit(dsn)
    if not parts.hostname:
        raise ValueError("the DSN names no host")
    return parts.hostname, parts.port or 5432, unquote(parts.username or "")


async def connect_options(dsn: str, settings: DbSettings) -> dict[str, Any]:
    """Keyword arguments for `asyncpg.connect`/`create_pool` with this DSN: `ssl`, and the
    `user`/`password` when they do not come from the DSN. The password is a coroutine
    function, so every new connection of a pool gets a current secret or token."""
    options: dict[str, Any] = {}
    tls = ssl_option(settings)
    if tls is not None:
        options["ssl"] = tls
    if settings.auth == "secrets_manager":
        source = shared_secret(
            settings.password_secret_id, settings.aws_region, settings.secret_refresh_seconds
        )
        credentials = await source.aget()
        if not _endpoint(dsn)[2]:
            if credentials.username is None:
                raise ValueError(
                    f"neither the DSN nor secret {settings.password_secret_id!r} names a user"
                )
            options["user"] = credentials.username

        async def secret_password() -> str:
            return (await source.aget()).password

        options["password"] = secret_password
    elif settings.auth == "iam":
        host, port, user = _endpoint(dsn)
        if not user:
            raise ValueError("IAM authentication needs the DSN to name the database user")
        token = shared_rds_token(
            host, port, user, settings.aws_region, settings.iam_token_refresh_seconds
        )
        options["password"] = token.aget
    return options


async def connect(dsn: str, settings: DbSettings, **kwargs: Any) -> asyncpg.Connection:
    """One connection (migrations, the scheduler's lock, the publication listener)."""
    kwargs.setdefault("timeout", settings.connect_timeout_seconds)
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, **await connect_options(dsn, settings), **kwargs
    )
    return conn


def connector(
    dsn: str, settings: DbSettings, **kwargs: Any
) -> Callable[[], Awaitable[asyncpg.Connection]]:
    """A no-argument function opening connections like `connect` (for the scheduler)."""

    async def open_connection() -> asyncpg.Connection:
        return await connect(dsn, settings, **kwargs)

    return open_connection


async def open_pool(dsn: str, settings: DbSettings) -> asyncpg.Pool:
    """An asyncpg pool with a bounded size and statement timeout."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        command_timeout=settings.command_timeout_seconds,
        timeout=settings.connect_timeout_seconds,
        **await connect_options(dsn, settings),
    )
    assert pool is not None
    return pool


class PostgresHealth:
    """Readiness: a pooled connection answers `SELECT 1`."""

    name = "postgres"

    def __init__(self, pool: asyncpg.Pool, timeout_seconds: float = 1.0) -> None:
        self._pool = pool
        self._timeout = timeout_seconds

    async def ping(self) -> None:
        async with self._pool.acquire(timeout=self._timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=self._timeout)
