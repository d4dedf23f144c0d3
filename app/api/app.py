"""`create_app(settings)`: the Litestar application and the one lifespan owning its resources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from app.adapters.kafka import KafkaHealth, KafkaIngestionLog, new_producer
from app.adapters.postgres.pool import PostgresHealth, open_pool
from app.adapters.redis_cache import RedisHealth, new_redis
from app.api.openapi import document_request_body
from app.api.problems import EXCEPTION_HANDLERS
from app.api.routes import health, observations
from app.domain.observation import ObservationSubmission
from app.ports import HealthCheck, IngestionLog
from app.settings import Settings
from app.telemetry.http import http_telemetry_plugin
from app.telemetry.setup import Telemetry, disabled


@dataclass
class Resources:
    """Everything the lifespan opened; handlers receive parts of it through `Provide`."""

    writer: asyncpg.Pool
    reader: asyncpg.Pool
    producer: AIOKafkaProducer
    redis: redis.Redis
    ingestion_log: IngestionLog
    health_checks: list[HealthCheck] = field(default_factory=list)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Open pools, producer and cache client; close each exactly once, in reverse order."""
    async with AsyncExitStack() as stack:
        writer = await open_pool(settings.db.writer_dsn, settings.db)
        stack.push_async_callback(writer.close)
        reader = await open_pool(settings.db.reader_dsn, settings.db)
        stack.push_async_callback(reader.close)
        producer = new_producer(settings.kafka)
        await producer.start()
        # stop() flushes what is still batched: nothing acknowledged is left behind.
        stack.push_async_callback(producer.stop)
        cache = new_redis(settings.redis)
        stack.push_async_callback(cache.aclose)
        yield Resources(
            writer=writer,
            reader=reader,
            producer=producer,
            redis=cache,
            ingestion_log=KafkaIngestionLog(producer, settings.kafka),
            health_checks=[PostgresHealth(writer), KafkaHealth(producer), RedisHealth(cache)],
        )


def create_app(settings: Settings, telemetry: Telemetry | None = None) -> Litestar:
    """Build the HTTP application; resources open in its lifespan, not at import or here."""
    telemetry = telemetry or disabled("api")
    limit = observations.InFlightLimit(settings.api.max_in_flight_requests)
    holder: dict[str, Resources] = {}

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            holder["resources"] = resources
            yield

    def resources() -> Resources:
        return holder["resources"]

    dependencies: dict[str, Any] = {
        "ingestion_log": Provide(lambda: resources().ingestion_log, sync_to_thread=False),
        "health_checks": Provide(lambda: resources().health_checks, sync_to_thread=False),
        "in_flight": Provide(lambda: limit, sync_to_thread=False, use_cache=True),
        "metrics": Provide(lambda: telemetry.metrics, sync_to_thread=False, use_cache=True),
        "retry_after_seconds": Provide(
            lambda: settings.api.retry_after_seconds, sync_to_thread=False, use_cache=True
        ),
    }
    app = Litestar(
        route_handlers=[health.live, health.ready, observations.post_observations],
        lifespan=[lifespan],
        dependencies=dependencies,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        plugins=(
            [http_telemetry_plugin(telemetry.tracer_provider, telemetry.metrics)]
            if telemetry.tracer_provider is not None
            else []
        ),
        openapi_config=OpenAPIConfig(
            title="QIS Data Management API", version="1.0.0", path="/schema"
        ),
        debug=False,
    )
    document_request_body(app, "/v1/observations", "POST", ObservationSubmission)
    return app
