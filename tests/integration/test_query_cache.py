"""The cache's adapters on the real stack: Redis L2, the publication listener, Redis outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
import redis.asyncio as redis
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from app.adapters.postgres.publications import Publication, PublicationListener
from app.adapters.redis_cache import RedisCache, new_redis
from app.api.auth import READ
from app.entrypoints.api import create_app
from app.ports import CacheUnavailable
from app.settings import RedisSettings, Settings
from app.telemetry.metrics import QisMetrics
from app.telemetry.setup import Telemetry
from tests.auth import bearer
from tests.conftest import unique_series
from tests.e2e.conftest import free_port
from tests.integration.test_query import SNAP, T1, insert_version, ts


@pytest.fixture
async def l2(settings: Settings, running_stack: None) -> AsyncIterator[RedisCache]:
    client = new_redis(settings.redis)
    yield RedisCache(client)
    await client.aclose()


async def test_l2_round_trip_and_ttl(l2: RedisCache, redis_client: redis.Redis) -> None:
    key = f"official:{{{unique_series()}}}:2026-01-15T14:00:00Z:latest"
    assert await l2.get(key) is None
    await l2.put(key, b'{"version":1}', 300)
    assert await l2.get(key) == b'{"version":1}'
    assert 295 <= await redis_client.ttl(key) <= 300
    await l2.put(key, b"", 60)  # ABSENT is stored as the empty string, not as a miss
    assert await l2.get(key) == b""


async def test_scoped_keys_live_in_the_generation_of_their_series(
    l2: RedisCache, redis_client: redis.Redis
) -> None:
    series = unique_series()
    scope, key = f"scope:{{{series}}}", f"historical:{{{series}}}:a:b:raw:0"
    generation, value = await l2.get_scoped(scope, key)
    assert value is None
    assert (await redis_client.get(scope)) == generation.encode()
    await l2.put(key, b"page", 300, generation)
    assert await redis_client.get(f"{key}@{generation}") == b"page"
    assert await l2.get_scoped(scope, key) == (generation, b"page")
    latest = f"official:{{{series}}}:2026-01-15T14:00:00Z:latest"
    await l2.put(latest, b"v1", 300)
    await l2.invalidate([latest], [scope])
    assert await l2.get(latest) is None
    new_generation, value = await l2.get_scoped(scope, key)
    assert new_generation != generation
    assert value is None
    # A generation evicted (or expired) starts a new one: old pages are never resurrected.
    await redis_client.delete(scope)
    third, value = await l2.get_scoped(scope, key)
    assert third not in {generation, new_generation}
    assert value is None


async def test_every_redis_failure_is_cache_unavailable() -> None:
    client = new_redis(RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0"))
    l2 = RedisCache(client)
    try:
        with pytest.raises(CacheUnavailable, match="redis"):
            await l2.get("k")
        with pytest.raises(CacheUnavailable):
            await l2.get_scoped("scope:{S}", "k")
        with pytest.raises(CacheUnavailable):
            await l2.put("k", b"v", 10)
        with pytest.raises(CacheUnavailable):
            await l2.invalidate(["k"], ["scope:{S}"])
    finally:
        await client.aclose()


async def test_the_listener_hears_committed_versions_only(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    heard: list[Publication] = []
    listener = PublicationListener(settings.db.writer_dsn, heard.append, lambda: None, lambda: None)
    await listener.start()
    try:
        series = unique_series("L")
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await insert_version(conn, series, SNAP, 1, 1.0, T1)  # type: ignore[arg-type]
            await tx.rollback()
        await insert_version(pool, series, SNAP, 2, 2.0, T1)
        snap_micro = datetime(2026, 1, 15, 14, 0, 0, 123456, tzinfo=UTC)
        await insert_version(pool, series, snap_micro, 1, 3.0, T1)
        for _ in range(100):
            if len([p for p in heard if p.series == series]) >= 2:
                break
            await asyncio.sleep(0.01)
        mine = [(p.snap, p.version) for p in heard if p.series == series]
        assert mine == [(SNAP, 2), (snap_micro, 1)]
    finally:
        await listener.aclose()
        await listener.aclose()  # idempotent


async def test_the_listener_reconnects_after_losing_its_connection(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    events: list[str] = []
    heard: list[Publication] = []
    listener = PublicationListener(
        settings.db.writer_dsn,
        heard.append,
        lambda: events.append("connected"),
        lambda: events.append("disconnected"),
        check_seconds=0.2,
    )
    await listener.start()
    try:
        first_pid = listener.server_pid
        assert first_pid is not None
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", first_pid)
        for _ in range(100):
            if events[-2:] == ["disconnected", "connected"]:
                break
            await asyncio.sleep(0.05)
        assert events[:1] == ["connected"]
        assert events[-2:] == ["disconnected", "connected"]
        assert listener.server_pid not in {None, first_pid}
        series = unique_series("L")
        await insert_version(pool, series, SNAP, 1, 1.0, T1)
        for _ in range(100):
            if any(p.series == series for p in heard):
                break
            await asyncio.sleep(0.01)
        assert [p.version for p in heard if p.series == series] == [1]
    finally:
        await listener.aclose()


async def test_reads_and_readiness_without_redis(settings: Settings, pool: asyncpg.Pool) -> None:
    """Redis unreachable (a port nobody listens on): reads are 200 from PostgreSQL, counted."""
    no_redis = msgspec.structs.replace(
        settings, redis=RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0")
    )
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(service="api", metrics=QisMetrics(provider.get_meter("qis"), "api"))
    series = unique_series("R")
    await insert_version(pool, series, SNAP, 1, 7.0, T1)
    async with AsyncTestClient(app=create_app(no_redis, telemetry)) as client:
        client.headers.update(bearer(READ))
        url = f"/v1/reference-data/{series}/official-values/{ts(SNAP)}"
        for _ in range(3):  # one miss (PostgreSQL), then L1 answers
            response = await client.get(url, params={"version": 1})
            assert response.status_code == 200
            assert response.json()["value"] == 7.0
        history = await client.get(
            f"/v1/reference-data/{series}/official-values",
            params={"from": ts(SNAP), "to": "2026-01-16T00:00:00Z"},
        )
        assert [i["value"] for i in history.json()["items"]] == [7.0]
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "degraded"
        assert body["degraded"] == ["redis"]
        assert body["failing"] == []
        assert body["checks"]["postgres"] == "ok"
        assert body["checks"]["redis"].startswith("error")
    assert metric_total(reader, "CacheFallbackCount") == 2
    provider.shutdown()


def metric_total(reader: InMemoryMetricReader, name: str) -> float:
    """Sum of a counter's data points across attributes (instrument names are lower-cased)."""
    data = reader.get_metrics_data()
    assert data is not None
    return sum(
        point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name.lower() == name.lower()
        for point in metric.data.data_points  # type: ignore[union-attr]
    )
