"""Token buckets per client and scope: shared in Redis, per process when Redis is down.

One Lua script takes tokens atomically (read, refill by elapsed time on Redis's own
clock, take, write, expire), so every api process of every replica draws from the same
bucket. A bucket holds `burst` tokens and refills at `per_second`; an idle bucket
expires once it would be full again.

A round trip per request would cost more than the request (a cached read): each process
takes a small lease of tokens at once, `lease_of(limit)` (50 ms of the rate, at most a
tenth of the burst, at least one), spends it locally and asks again when it is used up
or a second old. So a client may exceed its limit by at most one lease per api process;
a limit of 20/s or less is exact (a lease of one token).

When Redis does not answer, the request is limited by an in-process bucket with the same
rates instead (so N processes allow up to N times the limit while Redis is down), the
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

# KEYS[1]: the bucket; ARGV: per_second, burst, wanted. Returns {granted, seconds to wait}:
# granted is up to `wanted` whole tokens (at least one when any is there), else 0 and
# the wait for one.
TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = 0
local wait = 0
if tokens >= 1 then
  granted = math.min(wanted, math.floor(tokens))
  tokens = tokens - granted
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {granted, tostring(wait)}
"""


@dataclass(frozen=True)
class Limit:
    per_second: float
    burst: int


LEASE_SECONDS = 1.0


def lease_of(limit: Limit) -> int:
    """Tokens a process takes from Redis at once: 50 ms of the rate, at most a tenth of
    the burst, at least one."""
    return max(1, min(limit.burst // 10, int(limit.per_second / 20)))


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
        # Leased tokens not yet spent, by bucket: (count, taken at).
        self._held: dict[str, tuple[int, float]] = {}
        self.round_trips = 0

    async def acquire(self, client_id: str, scope: str) -> float:
        limit = self._limits[scope]
        key = f"{KEY_PREFIX}{scope}:{client_id}"
        now = self._clock()
        held = self._held.get(key)
        if held is not None and held[0] > 0 and now - held[1] < LEASE_SECONDS:
            self._held[key] = (held[0] - 1, held[1])
            return 0.0
        if now >= self._skip_until:
            try:
                self.round_trips += 1
                granted, wait = await self._script(
                    keys=[key], args=[limit.per_second, limit.burst, lease_of(limit)]
                )
            except (RedisError, OSError) as exc:
                self._skip_until = self._clock() + self._retry_seconds
                _log.warning(
                    "rate limit: Redis unavailable, limiting per process",
                    extra={"error": repr(exc)[:300]},
                )
            else:
                if int(granted) < 1:
                    return float(wait)
                if len(self._held) >= 100_000:
                    self._held.clear()
                self._held[key] = (int(granted) - 1, now)
                return 0.0
        self._metrics.rate_limit_fallback()
        return self.local.take(key, limit)
