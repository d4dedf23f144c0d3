"""Pipeline adapters against the real PostgreSQL: series, versions, snaps, audit, outbox."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.adapters.postgres import audit, outbox, reference_data, relay_positions, snaps
from app.adapters.postgres.pipeline import JournalNotOpen, PostgresPipelineStore
from app.domain.audit import GENESIS_HASH
from app.domain.series import SeriesConfig
from app.ports import AuditEntry, OutboxMessage, SnapState
from app.services.audit import verify_audit_trail
from app.settings import Settings
from tests.conftest import unique_series

if TYPE_CHECKING:
    from app.adapters.postgres import Connection

SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)
TEST_TOPIC = "qis.test.v1"


@pytest.fixture(scope="module", autouse=True)
async def test_topic(settings: Settings) -> None:
    """The topic test events name exists, so a relay running meanwhile can publish them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        if TEST_TOPIC not in await admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(TEST_TOPIC, 1, 1)])
    finally:
        await admin.close()


def message(key: str) -> OutboxMessage:
    return OutboxMessage(
        event_id=f"test-{uuid.uuid4()}",
        topic=TEST_TOPIC,
        key=key,
        payload=b'{"n":1}',
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )


async def _discard(conn: Connection, messages: list[OutboxMessage]) -> None:
    """Test events go to no topic: mark them published so the relay never tries."""
    await conn.execute(
        "UPDATE outbox SET published_at = clock_timestamp() WHERE event_id = ANY($1::text[])",
        [m.event_id for m in messages],
    )


def entry(series: str, after: dict[str, object] | None = None) -> AuditEntry:
    return AuditEntry(
        actor="test",
        action="test.appended",
        entity_type="test",
        entity_id=series,
        before=None,
        after=after if after is not None else {"n": 1},
    )


# --- reference_data -------------------------------------------------------------------


async def test_missing_series_are_created_and_existing_ones_left_alone(pool: asyncpg.Pool) -> None:
    known, new = unique_series(), unique_series()
    tuned = SeriesConfig(min_sources=2, expected_sources=("a", "b"))
    async with pool.acquire() as conn:
        await reference_data.save_series(conn, known, tuned, SNAP)
        created = await reference_data.create_missing(conn, [known, new], SeriesConfig())
        stored = await reference_data.get_many(conn, [known, new])
    assert [s.reference_data_id for s in created] == [new]
    assert stored[known].config == tuned
    assert stored[new].config == SeriesConfig()


async def test_configuration_round_trips_exactly(pool: asyncpg.Pool) -> None:
    series = unique_series()
    config = SeriesConfig(bounds=(-1e20, 1e20), tolerance_bps=12.5, precision=4, max_jump_pct=2)
    async with pool.acquire() as conn:
        await reference_data.save_series(conn, series, config, SNAP)
        stored = await reference_data.get_series(conn, series)
    assert stored is not None
    assert stored.config == config
    assert stored.updated_at == SNAP


async def test_listing_is_keyset_paginated_by_id(pool: asyncpg.Pool) -> None:
    prefix = unique_series("L")
    ids = [f"{prefix}-{c}" for c in "ABC"]
    async with pool.acquire() as conn:
        for series in reversed(ids):
            await reference_data.save_series(conn, series, SeriesConfig(), SNAP)
        first = await reference_data.list_series(conn, prefix, 2)
        second = await reference_data.list_series(conn, first[-1].reference_data_id, 2)
    assert [s.reference_data_id for s in first] == ids[:2]
    assert second[0].reference_data_id == ids[2]


async def test_series_lock_is_held_until_the_transaction_ends(pool: asyncpg.Pool) -> None:
    series = unique_series()

    async def try_lock(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> bool:
        return bool(
            await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
                reference_data.SERIES_LOCK_NAMESPACE,
                series,
            )
        )

    async with pool.acquire() as holder, pool.acquire() as other:
        tx = holder.transaction()
        await tx.start()
        await reference_data.lock_series(holder, [series, unique_series()])
        async with other.transaction():
            assert await try_lock(other) is False
        await tx.commit()
        async with other.transaction():
            assert await try_lock(other) is True


# --- snaps ----------------------------------------------------------------------------


async def test_snap_states_upsert_and_due_windows(pool: asyncpg.Pool) -> None:
    series = unique_series()
    past, future = SNAP, datetime.now(UTC) + timedelta(hours=1)
    async with pool.acquire() as conn:
        await snaps.save_snap_states(
            conn,
            [
                SnapState(
                    reference_data_id=series,
                    snap=past,
                    window_closes_at=past + timedelta(seconds=60),
                    state="open",
                    latest_version=None,
                ),
                SnapState(
                    reference_data_id=series,
                    snap=future,
                    window_closes_at=future + timedelta(seconds=60),
                    state="open",
                    latest_version=None,
                ),
            ],
        )
        due = await snaps.due_snaps(conn, 100_000)
        await snaps.save_snap_states(
            conn,
            [
                SnapState(
                    reference_data_id=series,
                    snap=past,
                    window_closes_at=past + timedelta(seconds=60),
                    state="published",
                    latest_version=1,
                )
            ],
        )
        states = await snaps.snap_states(conn, [(series, past), (series, future)])
        due_after = await snaps.due_snaps(conn, 100_000)
    assert (series, past) in due
    assert (series, future) not in due
    assert (states[(series, past)].state, states[(series, past)].latest_version) == ("published", 1)
    assert states[(series, future)].state == "open"
    assert (series, past) not in due_after


# --- audit ----------------------------------------------------------------------------


async def test_audit_records_chain_across_transactions(pool: asyncpg.Pool) -> None:
    series = unique_series()
    chained = []
    for n in range(2):
        async with pool.acquire() as conn, conn.transaction():
            at = await audit.lock_journal(conn)
            chained += await audit.append_records(
                conn, [entry(series, {"n": n}), entry(series)], at
            )
    async with pool.acquire() as conn:
        stored = await audit.records_for(conn, "test", series)
        previous = await conn.fetchval(
            "SELECT hash FROM audit_log WHERE seq < $1 ORDER BY seq DESC LIMIT 1", stored[2].seq
        )
    assert stored == chained
    assert stored[1].prev_hash == stored[0].hash
    assert stored[3].prev_hash == stored[2].hash
    # The second transaction chained onto whatever was last when it held the lock.
    assert stored[2].prev_hash == previous
    assert stored[0].seq is not None
    assert stored[2].seq is not None
    assert stored[0].seq < stored[2].seq


async def test_concurrent_appends_form_one_linear_chain(pool: asyncpg.Pool) -> None:
    series = unique_series()

    async def append(n: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            at = await audit.lock_journal(conn)
            await audit.append_records(
                conn, [entry(series, {"n": n, "i": i}) for i in range(3)], at
            )

    await asyncio.gather(*(append(n) for n in range(6)))

    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT a.seq, a.prev_hash, p.hash AS previous
                 FROM audit_log a
                 JOIN LATERAL (SELECT hash FROM audit_log WHERE seq < a.seq
                               ORDER BY seq DESC LIMIT 1) p ON true
                WHERE a.entity_type = 'test' AND a.entity_id = $1""",
            series,
        )
    assert len(rows) == 18
    assert all(r["prev_hash"] == r["previous"] for r in rows)


async def test_numbers_jsonb_would_rewrite_read_back_as_hashed(pool: asyncpg.Pool) -> None:
    series = unique_series()
    async with pool.acquire() as conn, conn.transaction():
        at = await audit.lock_journal(conn)
        (record,) = await audit.append_records(
            conn, [entry(series, {"big": 1e20, "tiny": 1e-7, "int": 3})], at
        )
    async with pool.acquire() as conn:
        (stored,) = await audit.records_for(conn, "test", series)
    assert stored.after == {"big": 1e20, "tiny": 1e-7, "int": 3}
    assert isinstance(stored.after["big"], float)
    assert stored == record


async def test_audit_log_refuses_updates_and_deletes(pool: asyncpg.Pool) -> None:
    series = unique_series()
    async with pool.acquire() as conn:
        async with conn.transaction():
            at = await audit.lock_journal(conn)
            await audit.append_records(conn, [entry(series)], at)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE audit_log SET actor = 'x' WHERE entity_id = $1", series)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM audit_log WHERE entity_id = $1", series)
        (stored,) = await audit.records_for(conn, "test", series)
    assert stored.actor == "test"


async def test_verify_detects_a_tampered_copy_of_the_trail(pool: asyncpg.Pool) -> None:
    series = unique_series()
    async with pool.acquire() as conn:
        async with conn.transaction():
            at = await audit.lock_journal(conn)
            (victim, _) = await audit.append_records(conn, [entry(series), entry(series)], at)
        # The real trail stays untouched: tamper with a scratch copy (this session's), of the
        # last stretch of the trail up to our records, checked from the hash before it.
        assert victim.seq is not None
        await conn.execute(
            """CREATE TEMP TABLE audit_scratch AS
                 SELECT * FROM audit_log WHERE seq BETWEEN $1 - 200 AND $1 + 1""",
            victim.seq,
        )
        try:
            first = await conn.fetchval("SELECT min(seq) FROM audit_scratch")
            start = await conn.fetchval("SELECT prev_hash FROM audit_log WHERE seq = $1", first)
            intact = await verify_audit_trail(
                audit.stream_records(conn, table="audit_scratch"), start_hash=start
            )
            await conn.execute(
                """UPDATE audit_scratch SET after = '{"n": 2}'::json WHERE seq = $1""", victim.seq
            )
            broken = await verify_audit_trail(
                audit.stream_records(conn, table="audit_scratch"), start_hash=start
            )
        finally:
            await conn.execute("DROP TABLE audit_scratch")
    assert intact.ok
    assert intact.records >= 2
    assert broken.broken_seq == victim.seq
    assert broken.reason == "hash does not match the record's content"
    assert broken.stored == victim.hash


async def test_stream_refuses_anything_but_a_table_name(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(ValueError, match="not a table name"):
            await anext(audit.stream_records(conn, table="audit_log; DROP TABLE x"))


async def test_the_first_record_of_the_trail_points_to_genesis(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            at = await audit.lock_journal(conn)
            await audit.append_records(conn, [entry(unique_series())], at)
        first = await conn.fetchrow("SELECT prev_hash FROM audit_log ORDER BY seq LIMIT 1")
    assert first is not None
    assert first["prev_hash"] == GENESIS_HASH


async def test_the_trail_can_be_followed_by_seq(pool: asyncpg.Pool) -> None:
    series = unique_series()
    async with pool.acquire() as conn:
        async with conn.transaction():
            at = await audit.lock_journal(conn)
            mine = await audit.append_records(conn, [entry(series), entry(series)], at)
        assert mine[0].seq is not None
        following = await audit.records_after(conn, mine[0].seq - 1, 2)
    assert following == mine


async def test_relay_positions_only_move_forward(pool: asyncpg.Pool) -> None:
    name = f"test-{uuid.uuid4()}"
    async with pool.acquire() as conn:
        unknown = await relay_positions.read_position(conn, name)
        await relay_positions.save_position(conn, name, 10)
        await relay_positions.save_position(conn, name, 7)
        position = await relay_positions.read_position(conn, name)
        await conn.execute("DELETE FROM relay_positions WHERE name = $1", name)
    assert unknown == 0
    assert position == 10


async def test_the_audit_relay_starts_after_what_the_outbox_carried(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        position = await relay_positions.read_position(conn, "audit")
        last = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM audit_log")
    assert 0 <= position <= last


# --- outbox ---------------------------------------------------------------------------


async def test_a_late_committer_is_neither_skipped_nor_overtaken(pool: asyncpg.Pool) -> None:
    key = unique_series()
    early, late = message(key), message(key)
    ours = {early.event_id, late.event_id}
    async with pool.acquire() as first, pool.acquire() as second, pool.acquire() as relay:
        tx = first.transaction()
        await tx.start()
        store = PostgresPipelineStore(first)
        await store.open_journal()
        await store.enqueue([early])  # transaction 1 queued its row and has not committed

        async def queue_late() -> None:
            async with second.transaction():
                other = PostgresPipelineStore(second)
                await other.open_journal()
                await other.enqueue([late])

        queued = asyncio.create_task(queue_late())
        await asyncio.sleep(0.3)
        seen_meanwhile = [
            m for m in await outbox.fetch_unpublished(relay, 1_000_000) if m.event_id in ours
        ]
        assert not queued.done(), "the second writer waits for the first one's commit"
        await tx.commit()
        await asyncio.wait_for(queued, 10)
        seen = [m for m in await outbox.fetch_unpublished(relay, 1_000_000) if m.event_id in ours]
        await outbox.mark_published(relay, [m.id for m in seen])
    assert seen_meanwhile == []
    assert [m.event_id for m in seen] == [early.event_id, late.event_id]
    assert seen[0].id < seen[1].id
    assert seen[0].headers == early.headers
    assert seen[0].payload == early.payload


async def test_events_need_the_journal_lock(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        store = PostgresPipelineStore(conn)
        with pytest.raises(JournalNotOpen):
            await store.enqueue([message("K")])
        with pytest.raises(JournalNotOpen):
            await store.append_audit([entry("K")], SNAP)


async def test_marking_published_reports_only_rows_it_marked(
    empty_db: asyncpg.Connection,
) -> None:
    # A database of its own: on the shared one a relay (a scheduler started by another
    # test) may publish the row between the enqueue and the first mark (seen in CI).
    m = message(unique_series())
    conn = empty_db
    async with conn.transaction():
        store = PostgresPipelineStore(conn)
        await store.open_journal()
        await store.enqueue([m, m])  # the same event twice is queued once
    row_ids = await conn.fetch("SELECT id FROM outbox WHERE event_id = $1", m.event_id)
    ids = [r["id"] for r in row_ids]
    first = await outbox.mark_published(conn, ids)
    second = await outbox.mark_published(conn, ids)
    assert len(ids) == 1
    assert first == ids
    assert second == []


async def test_queued_events_notify_the_relay_at_commit(pool: asyncpg.Pool) -> None:
    received: list[str] = []

    def on_notify(*args: object) -> None:
        received.append(str(args[2]))

    queued = message(unique_series())
    async with pool.acquire() as listener, pool.acquire() as writer:
        await listener.add_listener(outbox.NOTIFY_CHANNEL, on_notify)
        try:
            async with writer.transaction():
                store = PostgresPipelineStore(writer)
                await store.open_journal()
                await store.enqueue([queued])
            async with asyncio.timeout(5):
                while not received:
                    await asyncio.sleep(0.02)
        finally:
            await listener.remove_listener(outbox.NOTIFY_CHANNEL, on_notify)
            await _discard(writer, [queued])
    assert received[0] == outbox.NOTIFY_CHANNEL
