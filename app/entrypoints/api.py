"""`create_app(settings)`: the Litestar application and the one lifespan owning its resources."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer
from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.routes import HTTPRoute

from app.adapters.failures import is_transient
from app.adapters.jwt_verifier import JwtVerifier
from app.adapters.kafka import KafkaHealth, KafkaIngestionLog, new_producer
from app.adapters.memory_cache import MemoryCache
from app.adapters.postgres.horizon import PostgresLakeHorizon
from app.adapters.postgres.pipeline import PostgresDatabase, PostgresReadModel
from app.adapters.postgres.pool import PostgresHealth, open_pool
from app.adapters.postgres.publications import PublicationListener
from app.adapters.postgres.queries import PostgresQueries
from app.adapters.rate_limit import RedisRateLimiter
from app.adapters.redis_cache import RedisCache, RedisHealth, new_redis
from app.api import examples
from app.api.auth import Gate, access_check, document_security, unguarded_routes
from app.api.examples import STORE_UNAVAILABLE
from app.api.openapi import document_request_body
from app.api.problems import EXCEPTION_HANDLERS, handle_unexpected, problem_response
from app.api.routes import descriptors, health, observations, query, reference_data
from app.domain.descriptor import Descriptor
from app.domain.observation import ObservationSubmission
from app.domain.series import SeriesConfig
from app.entrypoints import unreachable
from app.ports import (
    DescriptorStoreUnavailable,
    HealthCheck,
    IngestionLog,
    QueryStore,
    VerifierUnavailable,
)
from app.services.cache import CachePolicy, TwoLevelCache
from app.services.descriptors import Descriptors
from app.services.lake_query import TieredQueries
from app.services.query import QueryService
from app.settings import CacheSettings, Settings
from app.telemetry.http import instrument_http
from app.telemetry.metrics import QisMetrics, noop_metrics
from app.telemetry.setup import Telemetry, disabled

_log = logging.getLogger("qis.api")


@dataclass
class Resources:
    """Everything the lifespan opened; handlers receive parts of it through `Provide`."""

    writer: asyncpg.Pool
    reader: asyncpg.Pool
    producer: AIOKafkaProducer
    redis: redis.Redis
    ingestion_log: IngestionLog
    query: QueryService
    health_checks: list[HealthCheck] = field(default_factory=list)
    # None when descriptor documents are disabled (QIS_DOCUMENTS__ENABLED=false).
    descriptors: Descriptors | None = None


@asynccontextmanager
async def open_resources(
    settings: Settings, metrics: QisMetrics | None = None
) -> AsyncIterator[Resources]:
    """Open pools, producer and cache client; close each exactly once, in reverse order."""
    async with AsyncExitStack() as stack:
        db, kafka = settings.db, settings.kafka
        writer = await unreachable.postgres(open_pool(db.writer_dsn, db), db.writer_dsn)
        stack.push_async_callback(writer.close)
        reader = await unreachable.postgres(open_pool(db.reader_dsn, db), db.reader_dsn)
        stack.push_async_callback(reader.close)
        producer = new_producer(kafka)
        # stop() flushes what is still batched: nothing acknowledged is left behind. It
        # also closes a producer whose start failed.
        stack.push_async_callback(producer.stop)
        await unreachable.kafka(producer.start(), kafka.bootstrap_servers)
        cache = new_redis(settings.redis)
        stack.push_async_callback(cache.aclose)
        # Query cache: L1 here, L2 Redis; the writer announces new versions (docs/cache.md).
        policy = cache_policy(settings.cache)
        query_cache = TwoLevelCache(
            MemoryCache(settings.cache.l1_max_entries, settings.cache.l1_max_bytes),
            RedisCache(cache),
            policy,
            metrics or noop_metrics("api"),
        )
        invalidations = asyncio.create_task(query_cache.run_invalidations())
        stack.push_async_callback(_cancelled, invalidations)
        listener = PublicationListener(
            settings.db.writer_dsn,
            on_published=lambda p: query_cache.published(p.series, p.snap, p.version),
            on_connected=query_cache.connected,
            on_disconnected=query_cache.disconnected,
            check_seconds=settings.cache.listener_check_seconds,
            db=settings.db,
        )
        await listener.start()
        stack.push_async_callback(listener.aclose)
        health_checks: list[HealthCheck] = [
            PostgresHealth(writer),
            KafkaHealth(producer),
            RedisHealth(cache),
        ]
        descriptors = None
        if settings.documents.enabled:
            descriptors = await _descriptors(
                settings, stack, writer, query_cache, policy, metrics or noop_metrics("api")
            )
            health_checks.append(descriptors[1])
        yield Resources(
            writer=writer,
            reader=reader,
            producer=producer,
            redis=cache,
            ingestion_log=KafkaIngestionLog(producer, settings.kafka),
            query=QueryService(query_store(settings, reader, writer), query_cache, policy),
            health_checks=health_checks,
            descriptors=None if descriptors is None else descriptors[0],
        )


async def _descriptors(
    settings: Settings,
    stack: AsyncExitStack,
    writer: asyncpg.Pool,
    cache: TwoLevelCache,
    policy: CachePolicy,
    metrics: QisMetrics,
) -> tuple[Descriptors, HealthCheck]:
    """The descriptor use cases on the document store (docs/descriptors.md)."""
    from app.adapters.documentdb import DocumentDbDescriptors, DocumentStoreHealth, new_client
    from app.telemetry.documents import DocumentStoreCommands

    client = new_client(settings.documents, [DocumentStoreCommands(metrics)])
    stack.push_async_callback(client.close)
    store = DocumentDbDescriptors.from_settings(client, settings.documents)
    try:
        await store.setup()
    except DescriptorStoreUnavailable as exc:
        # Reads and writes work without the index; it is made on the next start.
        _log.warning(
            "document store unavailable at start; index not checked", extra={"error": str(exc)}
        )
    service = Descriptors(store, PostgresDatabase(writer), cache, policy)
    return service, DocumentStoreHealth(store)


def query_store(settings: Settings, reader: asyncpg.Pool, writer: asyncpg.Pool) -> QueryStore:
    """PostgreSQL; with the lake enabled, reads older than retention from the lake."""
    database = PostgresQueries(reader, writer)
    if not settings.lake.enabled:
        return database

    def open_lake() -> QueryStore:
        from app.adapters.lake_reader import LakeFiles, LakeQueries, LakeReader

        return LakeQueries(LakeReader(LakeFiles.from_settings(settings.lake)))

    return TieredQueries(database, open_lake, PostgresLakeHorizon(reader))


def cache_policy(cache: CacheSettings) -> CachePolicy:
    """The query cache's policy as configured (`QIS_CACHE__*`)."""
    return CachePolicy(
        l1_mutable_ttl_seconds=cache.l1_mutable_ttl_seconds,
        l1_immutable_ttl_seconds=cache.l1_immutable_ttl_seconds,
        official_ttl_seconds=cache.official_ttl_seconds,
        quality_ttl_seconds=cache.quality_ttl_seconds,
        immutable_ttl_seconds=cache.immutable_ttl_seconds,
        absent_ttl_seconds=cache.absent_ttl_seconds,
        descriptor_ttl_seconds=cache.descriptor_ttl_seconds,
        descriptor_l1_ttl_seconds=cache.descriptor_l1_ttl_seconds,
        settle_seconds=cache.settle_seconds,
        replica_lag_guard_seconds=cache.replica_lag_guard_seconds,
        floor_seconds=cache.floor_seconds,
        redis_retry_seconds=cache.redis_retry_seconds,
    )


async def _cancelled(task: asyncio.Task[None]) -> None:
    # Cancel until it is done: a library timeout racing the cancellation can swallow it
    # (turning it into a TimeoutError the loop handles), and one lost cancel must not
    # hang shutdown.
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        _log.error("background task failed", exc_info=task.exception())


def allow_every_method(app: Litestar) -> None:
    """Make `OPTIONS` list every method of its path (`Allow: GET, OPTIONS, PUT`).

    Litestar (2.25) builds a path's OPTIONS handler with its first route handler and keeps
    it when a second method joins the path, so its `Allow` header lists only the first
    method's. Each such handler reads the methods of the route it was built with: point
    that route's methods at the final ones (tests/unit/api/test_reference_data_routes.py).
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"}:
                for cell in getattr(handler.fn, "__closure__", None) or ():
                    if isinstance(cell.cell_contents, HTTPRoute):
                        cell.cell_contents.methods = route.methods


def _unavailable_or_unexpected(
    retry_after_seconds: int,
) -> Callable[[Request[Any, Any, Any], Exception], Response[bytes]]:
    """A store that does not answer (PostgreSQL, Redis, Kafka: `is_transient`) is a 503
    with Retry-After, as ingestion already answers when Kafka is down; anything else a
    500 that leaks nothing."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        if not is_transient(exc):
            return handle_unexpected(request, exc)
        _log.warning(
            "store unavailable", extra={"path": request.url.path, "error": repr(exc)[:300]}
        )
        return problem_response(STORE_UNAVAILABLE, {"Retry-After": str(retry_after_seconds)})

    return handle


def create_app(settings: Settings, telemetry: Telemetry | None = None) -> Litestar:
    """Build the HTTP application; resources open in its lifespan, not at import or here."""
    telemetry = telemetry or disabled("api")
    limit = observations.InFlightLimit(settings.api.max_in_flight_requests)
    holder: dict[str, Resources] = {}
    verifier = JwtVerifier(settings.auth) if settings.auth.enabled else None
    gates = {"gate": Gate(verifier, None)}
    if verifier is None:
        _log.warning(
            "AUTHENTICATION IS OFF (QIS_AUTH__ENABLED=false): every /v1 route is open to "
            "anyone who can reach this api"
        )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with open_resources(settings, telemetry.metrics) as resources:
            holder["resources"] = resources
            # Buckets are per client: without authentication there is no client to limit.
            if settings.rate_limit.enabled and verifier is not None:
                limiter = RedisRateLimiter(resources.redis, settings.rate_limit, telemetry.metrics)
                gates["gate"] = Gate(verifier, limiter)
            if verifier is not None:
                try:  # the first requests need no fetch; an issuer still down is retried
                    await verifier.keys.refresh()
                except VerifierUnavailable:
                    _log.warning("token keys not fetched at start; retried on the first request")
            yield

    def resources() -> Resources:
        return holder["resources"]

    dependencies: dict[str, Any] = {
        "ingestion_log": Provide(lambda: resources().ingestion_log, sync_to_thread=False),
        "health_checks": Provide(lambda: resources().health_checks, sync_to_thread=False),
        "query_service": Provide(lambda: resources().query, sync_to_thread=False),
        "descriptors": Provide(lambda: resources().descriptors, sync_to_thread=False),
        "pipeline_db": Provide(lambda: PostgresDatabase(resources().writer), sync_to_thread=False),
        "reference_data_reader": Provide(
            lambda: PostgresReadModel(resources().reader), sync_to_thread=False
        ),
        "in_flight": Provide(lambda: limit, sync_to_thread=False, use_cache=True),
        "metrics": Provide(lambda: telemetry.metrics, sync_to_thread=False, use_cache=True),
        "retry_after_seconds": Provide(
            lambda: settings.api.retry_after_seconds, sync_to_thread=False, use_cache=True
        ),
    }
    app = Litestar(
        route_handlers=[
            health.live,
            health.ready,
            observations.post_observations,
            *query.ROUTES,
            *reference_data.ROUTES,
            *descriptors.ROUTES,
        ],
        lifespan=[lifespan],
        dependencies=dependencies,
        before_request=access_check(lambda: gates["gate"]),
        exception_handlers={
            **EXCEPTION_HANDLERS,  # type: ignore[dict-item]
            Exception: _unavailable_or_unexpected(settings.api.retry_after_seconds),
        },
        openapi_config=OpenAPIConfig(
            title="QIS Data Management API", version="1.0.0", path="/schema"
        ),
        debug=False,
        logging_config=None,  # logs go through app.telemetry.logging (JSON lines)
        # Every route refuses a larger body with 413 before reading it.
        request_max_body_size=settings.api.max_body_bytes,
    )
    allow_every_method(app)
    instrument_http(app, telemetry.tracer_provider, telemetry.metrics)
    if unguarded := unguarded_routes(app):
        raise RuntimeError(f"/v1 routes without a scope: {unguarded}")
    document_security(app)
    document_request_body(
        app, "/v1/observations", "POST", ObservationSubmission, examples.SUBMISSION_EXAMPLES
    )
    document_request_body(
        app, "/v1/reference-data/{reference_data_id}", "PUT", SeriesConfig, examples.CONFIG_EXAMPLES
    )
    document_request_body(
        app,
        "/v1/reference-data/{reference_data_id}/descriptor",
        "PUT",
        Descriptor,
        examples.DESCRIPTOR_EXAMPLES,
    )
    return app
