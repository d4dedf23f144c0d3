"""Token buckets in the real Redis: shared by limiters, refilled by time, per process
(and counted) when Redis does not answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from app.adapters.rate_limit import KEY_PREFIX, RedisRateLimiter
from app.settings import RateLimitSettings, Settings
from app.telemetry.metrics import QisMetrics, noop_metrics
from tests.e2e.conftest import free_port
from tests.integration.test_query_cache import metric_total

pytestmark = pytest.mark.integration
LIMITS = RateLimitSettings(read_per_second=20.0, read_burst=5, redis_retry_seconds=60.0)


@pytest.fixture
async def clients(settings: Settings, running_stack: None) -> AsyncIterator[list[redis.Redis]]:
    """Two clients: the connections of two api processes."""
    made = [redis.Redis.from_url(settings.redis.url) for _ in range(2)]
    yield made
    for client in made:
        await client.aclose()


async def test_two_limiters_draw_from_one_bucket_that_refills(
    clients: list[redis.Redis],
) -> None:
    one, two = (RedisRateLimiter(c, LIMITS, noop_metrics("api")) for c in clients)
    client_id = f"it-{uuid.uuid4().hex[:8]}"
    waits = [await (one, two)[n % 2].acquire(client_id, "qis/read") for n in range(7)]
    assert waits[:5] == [0.0] * 5
    assert 0 < waits[5] <= 1 / 20.0 + 0.01  # one token at 20/s
    assert waits[6] > 0
    assert await one.acquire(f"{client_id}-other", "qis/read") == 0.0  # its own bucket
    await asyncio.sleep(0.2)  # 4 tokens back
    assert await two.acquire(client_id, "qis/read") == 0.0
    ttl = await clients[0].pttl(f"{KEY_PREFIX}qis/read:{client_id}")
    assert 0 < ttl <= 1000 + 5 * 50  # gone once it would be full again (+1 s)


async def test_a_high_limit_takes_tokens_a_lease_at_a_time(
    clients: list[redis.Redis],
) -> None:
    high = RateLimitSettings(read_per_second=2000.0, read_burst=4000)
    one, two = (RedisRateLimiter(c, high, noop_metrics("api")) for c in clients)
    client_id = f"it-{uuid.uuid4().hex[:8]}"
    waits = [await one.acquire(client_id, "qis/read") for _ in range(250)]
    await two.acquire(client_id, "qis/read")
    assert waits == [0.0] * 250
    assert (one.round_trips, two.round_trips) == (3, 1)  # leases of 100 tokens
    tokens = float(await clients[0].hget(f"{KEY_PREFIX}qis/read:{client_id}", "tokens"))
    assert 3600 <= tokens < 3700  # 4 leases taken, refilled at most by the test's duration


async def test_without_redis_each_process_limits_and_counts_it() -> None:
    reader = InMemoryMetricReader()
    metrics = QisMetrics(MeterProvider(metric_readers=[reader]).get_meter("qis"), "api")
    dead = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    limiter = RedisRateLimiter(dead, LIMITS, metrics)
    try:
        waits = [await limiter.acquire("c", "qis/read") for _ in range(7)]
    finally:
        await dead.aclose()
    assert waits[:5] == [0.0] * 5
    assert waits[5] > 0
    assert metric_total(reader, "RateLimitFallbackCount") == 7
