"""Migrations are transactional and idempotent against the real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from app.adapters.postgres.migrate import Migration, MigrationError, bundled_migrations, migrate


async def test_second_run_applies_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn, bundled_migrations()) == []
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == [m.version for m in bundled_migrations()]


async def test_edited_migration_is_refused(pool: asyncpg.Pool) -> None:
    first = bundled_migrations()[0]
    edited = Migration(first.version, first.name, first.sql + "\n-- edited")
    async with pool.acquire() as conn:
        with pytest.raises(MigrationError, match="edited"):
            await migrate(conn, [edited])


async def test_a_failing_migration_leaves_nothing_behind(pool: asyncpg.Pool) -> None:
    good = bundled_migrations()
    broken = Migration(
        len(good) + 1, "broken", "CREATE TABLE should_not_exist (x int); SELECT 1/0;"
    )
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(conn, [*good, broken])
        exists = await conn.fetchval("SELECT to_regclass('should_not_exist') IS NOT NULL")
        recorded = await conn.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE version = $1", broken.version
        )
    assert exists is False
    assert recorded == 0
