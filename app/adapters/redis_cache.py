"""Redis adapter (redis-py asyncio): client construction and health."""

from __future__ import annotations

import redis.asyncio as redis

from app.settings import RedisSettings


def new_redis(settings: RedisSettings) -> redis.Redis:
    """A pooled client with short timeouts: a slow cache must not slow reads down."""
    return redis.Redis.from_url(
        settings.url,
        socket_timeout=settings.socket_timeout_seconds,
        socket_connect_timeout=settings.socket_timeout_seconds,
        health_check_interval=30,
    )


class RedisHealth:
    """Readiness: Redis answers PING."""

    name = "redis"

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def ping(self) -> None:
        await self._client.ping()
