"""Token buckets per client and scope: shared in Redis, per process when Redis is down.

One Lua script takes a token atomically (read, refill by elapsed time on Redis's own
clock, take, write, expire), so every api replica draws from the same bucket with one
round trip. A bucket holds `burst` tokens and refills at `per_second`; an idle bucket
expires once it would be full again.

When Redis does not answer, the request is limited by an in-process bucket with the same
rates instead (so N replicas allow up to N times the limit while Redis is down), the
fallback is counted (RateLimitFallbackCount), and Redis is skipped for
`redis_retry_seconds` before it is tried again, as the query cache does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from app.settings import RateLimitSettings
from app.telemetry.metrics import QisMetrics

_log = logging.getLogger("qis.rate_limit")
KEY_PREFIX = "qis:ratelimit:"

# KEYS[1]: the bucket; ARGV: per_second, burst. Returns {allowed, seconds to wait}.
TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True)
class Limit:
    per_second: float
    burst: int


def limits_of(settings: RateLimitSettings) -> dict[str, Limit]:
    """The configured limit of each scope."""
    return {
        "qis/ingest": Limit(settings.ingest_per_second, settings.ingest_burst),
        "qis/read": Limit(settings.read_per_second, settings.read_burst),
        "qis/admin": Limit(settings.admin_per_second, settings.admin_burst),
    }


class LocalBuckets:
    """In-process token buckets (the fallback); bounded: the oldest bucket goes first."""

    def __init__(
        self, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max = max_buckets
        self._clock = clock

    def take(self, key: str, limit: Limit) -> float:
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(limit.burst), now))
        tokens = min(limit.burst, tokens + max(0.0, now - at) * limit.per_second)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / limit.per_second
        if len(self._buckets) >= self._max:
            del self._buckets[next(iter(self._buckets))]
        self._buckets[key] = (tokens, now)
        return wait


class RedisRateLimiter:
    """`RateLimiter` on Redis, with the in-process fallback (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        settings: RateLimitSettings,
        metrics: QisMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._script = client.register_script(TAKE)
        self._limits = limits_of(settings)
        self._retry_seconds = settings.redis_retry_seconds
        self._metrics = metrics
        self._clock = clock
        self._skip_until = 0.0
        self.local = LocalBuckets(clock=clock)

    async def acquire(self, client_id: str, scope: str) -> float:
        limit = self._limits[scope]
        key = f"{KEY_PREFIX}{scope}:{client_id}"
        if self._clock() >= self._skip_until:
            try:
                allowed, wait = await self._script(keys=[key], args=[limit.per_second, limit.burst])
            except (RedisError, OSError) as exc:
                self._skip_until = self._clock() + self._retry_seconds
                _log.warning(
                    "rate limit: Redis unavailable, limiting per process",
                    extra={"error": repr(exc)[:300]},
                )
            else:
                return 0.0 if int(allowed) == 1 else float(wait)
        self._metrics.rate_limit_fallback()
        return self.local.take(key, limit)
