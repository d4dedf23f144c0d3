"""Integration fixtures: the real PostgreSQL, Kafka and Redis of the local stack."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
import redis.asyncio as redis

from app.adapters.kafka import ensure_topics
from app.adapters.postgres.migrate import (
    bundled_migrations,
    create_migrated_database,
    drop_database,
    migrate,
)
from app.adapters.postgres.pool import open_pool
from app.settings import Settings
from tests.stack import stack


@pytest.fixture(scope="session", autouse=True)
async def running_stack(settings: Settings) -> None:
    """Start the stack if needed (idempotent), migrate, create topics."""
    # On a fresh machine `up` also builds FerretDB once (a few minutes on two cores).
    stack("up", timeout=1200)
    conn = await asyncpg.connect(settings.db.writer_dsn)
    try:
        await migrate(conn, bundled_migrations())
    finally:
        await conn.close()
    await ensure_topics(settings.kafka)


@pytest.fixture(scope="session")
async def pool(settings: Settings, running_stack: None) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(settings.db.writer_dsn, settings.db)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_client(settings: Settings, running_stack: None) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis.url)
    yield client
    await client.aclose()


@asynccontextmanager
async def _fresh_database(settings: Settings) -> AsyncIterator[str]:
    """The DSN of a freshly created and migrated database, dropped afterwards."""
    name = f"qis_test_{uuid.uuid4().hex[:12]}"
    try:
        yield await create_migrated_database(settings.db.writer_dsn, name)
    finally:
        await drop_database(settings.db.writer_dsn, name)


@pytest.fixture
async def empty_db(settings: Settings, running_stack: None) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a freshly created and migrated database, dropped afterwards.

    For tests whose subject looks at a whole table (oldest rows first, counts), which the
    shared database fills with every other test's rows.
    """
    async with _fresh_database(settings) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            yield conn
        finally:
            await conn.close()


@pytest.fixture
async def empty_pool(settings: Settings, running_stack: None) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on a freshly created and migrated database, dropped afterwards."""
    async with _fresh_database(settings) as dsn:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
        try:
            yield pool
        finally:
            await pool.close()
