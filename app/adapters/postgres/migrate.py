"""Versioned SQL migrations, applied in order in one transaction.

A minimal table-based runner instead of a tool: the maintained Python migration tools
either bring an ORM (alembic/SQLAlchemy) or a second, synchronous driver (yoyo, via
psycopg), and all we need is "apply numbered .sql files once, in order, atomically".
An advisory lock makes concurrent `qis db migrate` runs safe; a checksum catches an
applied file that was edited afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from app.adapters.postgres import Connection


_LOCK_KEY = 0x515153_4D4947  # "QIS" "MIG"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """An applied migration changed, or the files are not numbered 1..N."""


def bundled_migrations() -> list[Migration]:
    """The SQL files shipped in `app/adapters/postgres/migrations`, in version order."""
    folder = resources.files("app.adapters.postgres") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations must be numbered 1..N, got {[m.version for m in found]}")
    return found


async def migrate(conn: Connection, migrations: list[Migration]) -> list[Migration]:
    """Apply the migrations not applied yet; return those applied now."""
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    applied_now: list[Migration] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {r["version"]: r["checksum"] for r in rows}
        for migration in migrations:
            known = applied.get(migration.version)
            if known is None:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum)"
                        " VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                applied_now.append(migration)
            elif known != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was edited after"
                    " it was applied; add a new migration instead"
                )
    return applied_now


async def create_migrated_database(server_dsn: str, name: str, *, fresh: bool = False) -> str:
    """DSN of database `name` on the server of `server_dsn`, created if missing (`fresh`:
    dropped first, so it starts from empty tables) and migrated to the bundled schema.

    For tests and benchmarks that need tables of their own: advisory locks and whole-table
    reads are per database, so they neither queue behind nor count other users' rows.
    """
    if fresh:
        await drop_database(server_dsn, name)
    admin = await asyncpg.connect(server_dsn)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = server_dsn.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, bundled_migrations())
    finally:
        await conn.close()
    return dsn


async def migration_problems(conn: Connection, migrations: list[Migration]) -> list[str]:
    """Why the database is not at the schema of `migrations`, one line each (empty: every
    migration applied, none edited since, none unknown). Reads only."""
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return ["no schema_migrations table: no migration was ever applied"]
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    applied = {r["version"]: r for r in rows}
    problems = []
    for migration in migrations:
        row = applied.pop(migration.version, None)
        label = f"{migration.version:04d}_{migration.name}"
        if row is None:
            problems.append(f"{label} is not applied")
        elif row["checksum"] != migration.checksum:
            problems.append(f"{label} was applied from a different file (checksum differs)")
    problems += [
        f"{version:04d}_{row['name']} is applied but unknown to this code (a newer schema)"
        for version, row in sorted(applied.items())
    ]
    return problems


async def drop_database(server_dsn: str, name: str, *, attempts: int = 10) -> None:
    """`DROP DATABASE name WITH (FORCE)`, waiting out an autovacuum worker (a superuser's,
    e.g. BRIN autosummarize) that FORCE cannot end as a plain role; it finishes in moments."""
    admin = await asyncpg.connect(server_dsn)
    try:
        for attempt in range(attempts):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except asyncpg.InsufficientPrivilegeError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(1.0)
    finally:
        await admin.close()
