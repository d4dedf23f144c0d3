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


async def test_rows_an_enabled_sink_has_not_passed_are_kept(
    empty_db: asyncpg.Connection,
) -> None:
    ids = await queue(empty_db, 6)
    await outbox.mark_published(empty_db, ids)
    sinks = ["sink.eventbridge", "sink.timestream"]

    # One sink without a position yet: nothing is purged.
    await empty_db.execute(
        "INSERT INTO relay_positions (name, position) VALUES ('sink.eventbridge', $1)", ids[4]
    )
    assert await outbox.purge_published(empty_db, 0, sinks=sinks) == 0

    # Both have positions: rows up to the lowest one go, the rest stay.
    await empty_db.execute(
        "INSERT INTO relay_positions (name, position) VALUES ('sink.timestream', $1)", ids[1]
    )
    assert await outbox.purge_published(empty_db, 0, sinks=sinks) == 2
    assert await remaining(empty_db) == ids[2:]

    # A sink no longer enabled does not hold rows back.
    assert await outbox.purge_published(empty_db, 0, sinks=["sink.eventbridge"]) == 3
    assert await remaining(empty_db) == ids[5:]


async def test_a_sink_relay_reads_its_topics_after_its_position_published_or_not(
    empty_db: asyncpg.Connection,
) -> None:
    async with empty_db.transaction():
        store = PostgresPipelineStore(empty_db)
        await store.open_journal()
        await store.enqueue(
            [
                OutboxMessage(
                    event_id=f"e{n}", topic="values" if n % 2 else "other", key="k", payload=b"{}"
                )
                for n in range(8)
            ]
        )
    ids = [row["id"] for row in await empty_db.fetch("SELECT id FROM outbox ORDER BY id")]
    await outbox.mark_published(empty_db, ids[:3])

    read = await outbox.fetch_after(empty_db, ids[2], ["values", "alerts"], 2)
    assert [(m.id, m.event_id) for m in read] == [(ids[3], "e3"), (ids[5], "e5")]
    rest = await outbox.fetch_after(empty_db, read[-1].id, ["values"], 10)
    assert [m.event_id for m in rest] == ["e7"]


async def test_a_new_relay_position_starts_after_the_newest_row_and_is_kept(
    empty_db: asyncpg.Connection,
) -> None:
    from app.adapters.postgres import relay_positions

    assert await relay_positions.open_position(empty_db, "sink.empty") == 0
    ids = await queue(empty_db, 3)
    assert await relay_positions.open_position(empty_db, "sink.new") == ids[-1]
    # Saved: opening it again later does not jump over what came since.
    assert await relay_positions.open_position(empty_db, "sink.empty") == 0
    await relay_positions.save_position(empty_db, "sink.new", ids[0])  # never backwards
    assert await relay_positions.open_position(empty_db, "sink.new") == ids[-1]
