"""The outbox purge on the real PostgreSQL: bounded, oldest first, only old published rows."""

from __future__ import annotations

import asyncpg

from app.adapters.postgres import outbox
from app.adapters.postgres.pipeline import PostgresPipelineStore
from app.ports import OutboxMessage


async def queue(conn: asyncpg.Connection, count: int) -> list[int]:
    async with conn.transaction():
        store = PostgresPipelineStore(conn)
        await store.open_journal()
        await store.enqueue(
            [
                OutboxMessage(event_id=f"purge-{n}", topic="t", key="k", payload=b"{}", headers={})
                for n in range(count)
            ]
        )
    return [row["id"] for row in await conn.fetch("SELECT id FROM outbox ORDER BY id")]


async def remaining(conn: asyncpg.Connection) -> list[int]:
    return [row["id"] for row in await conn.fetch("SELECT id FROM outbox ORDER BY id")]


async def test_purge_deletes_only_rows_published_before_the_retention_oldest_first(
    empty_db: asyncpg.Connection,
) -> None:
    ids = await queue(empty_db, 10)
    old = [ids[n] for n in (0, 1, 2, 4, 7)]
    recent = ids[3]
    assert await outbox.mark_published(empty_db, [*old, recent]) == sorted([*old, recent])
    await empty_db.execute(
        "UPDATE outbox SET published_at = published_at - interval '2 hours' WHERE id = ANY($1)",
        old,
    )

    # Each call looks at the `batch` oldest ids only: a bounded index range.
    assert await outbox.purge_published(empty_db, 3600, batch=4) == 3  # ids[0..2]
    assert await remaining(empty_db) == ids[3:]
    assert await outbox.purge_published(empty_db, 3600, batch=4) == 1  # ids[4] of 3..6
    assert await outbox.purge_published(empty_db, 3600, batch=4) == 1  # ids[7] of 3,5,6,7
    assert await outbox.purge_published(empty_db, 3600, batch=4) == 0

    # Recently published and unpublished rows stay, whatever their age in the table.
    assert await remaining(empty_db) == [ids[n] for n in (3, 5, 6, 8, 9)]
    unpublished = await outbox.fetch_unpublished(empty_db, 100)
    assert [m.id for m in unpublished] == [ids[n] for n in (5, 6, 8, 9)]


async def test_a_retention_of_zero_purges_every_published_row(
    empty_db: asyncpg.Connection,
) -> None:
    ids = await queue(empty_db, 6)
    await outbox.mark_published(empty_db, ids[:4])

    total = 0
    while deleted := await outbox.purge_published(empty_db, 0, batch=2):
        total += deleted

    assert total == 4
    assert await remaining(empty_db) == ids[4:]
