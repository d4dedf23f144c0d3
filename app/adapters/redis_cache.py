"""Redis adapter (redis-py asyncio): client construction, health, and the L2 query cache."""

from __future__ import annotations

import functools
import secrets
import ssl
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError, RedisError

from app.adapters.aws_auth import CredentialsError, SecretsManagerSecret, shared_secret
from app.ports import CacheUnavailable
from app.settings import RedisSettings

# A scope's generation outlives every key stored in it (the longest TTL is 3600 s), so a
# generation expiring can only orphan keys, never resurrect an older generation's.
GENERATION_TTL_SECONDS = 7200

# One round trip: read the scope's generation (starting one if there is none, e.g. after
# an eviction) and the key inside it. Scoped keys carry the series as a hash tag, like the
# scope, so this stays single-slot on a cluster-mode-enabled Redis too.
_GET_SCOPED = """
local generation = redis.call('GET', KEYS[1])
if not generation then
  generation = ARGV[2]
  redis.call('SET', KEYS[1], generation, 'EX', ARGV[3])
end
return {generation, redis.call('GET', ARGV[1] .. '@' .. generation)}
"""


class SecretCredentialProvider(CredentialProvider):
    """AUTH from a Secrets Manager secret, looked up per new connection (cached by the
    secret holder), so a rotated ElastiCache AUTH token reaches new connections. A failed
    lookup is a Redis authentication error: the cache is then unavailable, reads go on."""

    def __init__(self, secret: SecretsManagerSecret, username: str = "") -> None:
        self._secret = secret
        self._username = username

    def _pair(self, username: str | None, password: str) -> tuple[str] | tuple[str, str]:
        user = self._username or username
        return (user, password) if user else (password,)

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        try:
            credentials = self._secret.get()
        except CredentialsError as exc:
            raise AuthenticationError(str(exc)) from None
        return self._pair(credentials.username, credentials.password)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        try:
            credentials = await self._secret.aget()
        except CredentialsError as exc:
            raise AuthenticationError(str(exc)) from None
        return self._pair(credentials.username, credentials.password)


def security_options(settings: RedisSettings) -> dict[str, Any]:
    """TLS (for rediss:// URLs: the CA bundle and host name are checked) and AUTH."""
    options: dict[str, Any] = {}
    if settings.url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        options["ssl_check_hostname"] = True
        if settings.ssl_ca_file:
            options["ssl_ca_certs"] = settings.ssl_ca_file
    if settings.password_secret_id:
        options["credential_provider"] = SecretCredentialProvider(
            shared_secret(
                settings.password_secret_id, settings.aws_region, settings.secret_refresh_seconds
            ),
            settings.username,
        )
    elif settings.password:
        options["password"] = settings.password
        if settings.username:
            options["username"] = settings.username
    return options


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str) -> ssl.SSLContext:
    """One verifying TLS context per CA bundle ("" = the system store) for the process."""
    return ssl.create_default_context(cafile=ca_file or None)


class SharedContextSSLConnection(redis.SSLConnection):
    """A TLS connection using the process's context for its CA bundle. redis-py builds a
    context for every new connection, loading the system CA store each time: the event
    loop blocks meanwhile, and on a busy host that eats into the 0.25 s connect timeout."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssl_context.context = _tls_context(self.ssl_context.ca_certs or "")


def new_redis(settings: RedisSettings) -> redis.Redis:
    """A pooled client with short timeouts: a slow cache must not slow reads down."""
    pool = redis.ConnectionPool.from_url(
        settings.url,
        socket_timeout=settings.socket_timeout_seconds,
        socket_connect_timeout=settings.socket_timeout_seconds,
        health_check_interval=30,
        **security_options(settings),
    )
    if pool.connection_class is redis.SSLConnection:
        _tls_context(settings.ssl_ca_file)  # built now, at start, not on a first read
        pool.connection_class = SharedContextSSLConnection
    return redis.Redis.from_pool(pool)


class RedisHealth:
    """Readiness: Redis answers PING. Not required: without it reads go to PostgreSQL."""

    name = "redis"
    required = False

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def ping(self) -> None:
        await self._client.ping()


class RedisCache:
    """The L2 cache (`SharedCache`) on Redis; every Redis failure becomes CacheUnavailable."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._get_scoped = client.register_script(_GET_SCOPED)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(key)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        # The client is created without decode_responses, so values are bytes.
        return value if isinstance(value, bytes) else None

    async def get_scoped(self, scope: str, key: str) -> tuple[str, bytes | None]:
        try:
            generation, value = await self._get_scoped(
                keys=[scope], args=[key, _new_generation(), GENERATION_TTL_SECONDS]
            )
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return generation.decode(), None if value is None else bytes(value)

    async def put(self, key: str, value: bytes, ttl_seconds: int, generation: str = "") -> None:
        try:
            await self._client.set(
                f"{key}@{generation}" if generation else key, value, ex=ttl_seconds
            )
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def invalidate(self, keys: Sequence[str], scopes: Sequence[str]) -> None:
        if not keys and not scopes:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:  # one command per key: keys of several series, several slots
                    pipe.unlink(key)
                for scope in scopes:
                    pipe.set(scope, _new_generation(), ex=GENERATION_TTL_SECONDS)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc


def _new_generation() -> str:
    return secrets.token_hex(6)
