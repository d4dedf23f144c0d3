"""The reconciliation stage, window closing, leadership and the Kafka publisher, for real."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.adapters.failures import is_transient
from app.adapters.kafka import new_producer
from app.adapters.kafka_events import EVENT_ID_HEADER, KafkaEventPublisher
from app.adapters.postgres import audit
from app.adapters.postgres.leadership import AdvisoryLockElection, PostgresOutboxRetention
from app.adapters.postgres.pipeline import PostgresDatabase
from app.domain.series import SeriesConfig
from app.ports import EventBusUnavailable, PendingMessage
from app.services.reconcile import close_due_windows
from app.services.schedule import SchedulePolicy, Scheduler
from app.services.series import configure_series
from app.settings import Settings
from tests.conftest import unique_series
from tests.integration.pipeline_helpers import TOPICS, deliver, obs, versions

SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)
ABC = SeriesConfig(expected_sources=("a", "b", "c"))


async def test_agreeing_sources_publish_version_1_with_lineage_audit_and_events(
    pool: asyncpg.Pool,
) -> None:
    series = unique_series()
    await configure_series(PostgresDatabase(pool), series, ABC, actor="test")
    batch = [obs(series, "a", 100.00, SNAP), obs(series, "b", 100.02, SNAP)]
    batch.append(obs(series, "c", 99.99, SNAP))

    await deliver(pool, batch)

    (v1,) = await versions(pool, series, SNAP)
    assert (v1["version"], v1["value"], v1["status"], v1["supersedes"]) == (
        1,
        100.0,
        "official",
        None,
    )
    events = await pool.fetch(
        "SELECT topic, payload FROM outbox WHERE key = $1 ORDER BY id", series
    )
    topics = [e["topic"] for e in events]
    assert topics.count(TOPICS.official_values) == 1
    assert TOPICS.quality_alerts not in topics
    published = msgspec.json.decode(
        next(e["payload"] for e in events if e["topic"] == TOPICS.official_values)
    )
    assert (published["version"], published["value"]) == (1, 100.0)
    state = await pool.fetchrow(
        "SELECT state, latest_version FROM snaps WHERE reference_data_id = $1", series
    )
    assert state is not None
    assert (state["state"], state["latest_version"]) == ("published", 1)
    async with pool.acquire() as conn:
        records = await audit.records_for(
            conn, "official_value", f"{series}/2026-01-15T14:00:00Z/v1"
        )
    # (a relay running meanwhile may already have added `event.published`)
    (created,) = [r for r in records if r.action == "official_value.created"]
    assert created.at == v1["recorded_at"]
    # the lineage lives in the hash-chained audit record and in the event
    ids = sorted(o.observation_id for o in batch)
    assert isinstance(created.after, dict)
    assert sorted(created.after["observation_ids"]) == ids
    assert sorted(published["observation_ids"]) == ids


async def test_a_correction_creates_version_2_and_leaves_version_1_as_it_was(
    pool: asyncpg.Pool,
) -> None:
    series = unique_series()
    await configure_series(PostgresDatabase(pool), series, ABC, actor="test")
    await deliver(
        pool, [obs(series, s, v, SNAP) for s, v in (("a", 100), ("b", 100.02), ("c", 99.99))]
    )
    (before,) = await versions(pool, series, SNAP)

    await deliver(pool, [obs(series, "c", 100.04, SNAP, observed_after=5)])

    first, second = await versions(pool, series, SNAP)
    assert dict(first) == dict(before)
    assert (second["version"], second["supersedes"], second["value"]) == (2, 1, 100.02)
    assert second["recorded_at"] > first["recorded_at"]


async def test_concurrent_writers_of_one_series_take_turns(pool: asyncpg.Pool) -> None:
    series = unique_series()
    # No expected sources: every batch that adds a source changes the sources: a version.
    await deliver(pool, [obs(series, "a", 100.0, SNAP)])

    await asyncio.gather(
        deliver(pool, [obs(series, "b", 100.0, SNAP)]),
        deliver(pool, [obs(series, "c", 100.0, SNAP)]),
    )

    rows = await versions(pool, series, SNAP)
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert [r["supersedes"] for r in rows] == [None, 1, 2]
    assert rows[0]["recorded_at"] < rows[1]["recorded_at"] < rows[2]["recorded_at"]


async def test_the_scheduler_closes_a_window_with_a_source_missing(pool: asyncpg.Pool) -> None:
    series = unique_series()
    db = PostgresDatabase(pool)
    config = SeriesConfig(expected_sources=("a", "b", "c"), window_seconds=1)
    await configure_series(db, series, config, actor="test")
    snap = datetime.now(UTC).replace(microsecond=0)
    await deliver(pool, [obs(series, "a", 100.0, snap), obs(series, "b", 100.02, snap)])
    assert await versions(pool, series, snap) == []

    await asyncio.sleep(1.2)
    for _ in range(20):  # windows of other tests may be due too: close until ours is
        outcomes = await close_due_windows(db, topics=TOPICS)
        if any(o.reference_data_id == series for o in outcomes) or not outcomes:
            break

    (v1,) = await versions(pool, series, snap)
    assert (v1["value"], v1["status"]) == (100.01, "suspect")
    alert = await pool.fetchval(
        "SELECT payload FROM outbox WHERE key = $1 AND topic = $2", series, TOPICS.quality_alerts
    )
    assert msgspec.json.decode(alert)["quality"]["completeness"] == 0.6667


class _Idle(Scheduler):
    """A scheduler whose leader work is only counted (the election is what is under test)."""

    async def close_windows(self) -> None:
        return None

    async def relay(self, halt: asyncio.Event | None = None) -> None:
        return None


def _scheduler(settings: Settings, pool: asyncpg.Pool, key: int) -> _Idle:
    return _Idle(
        SchedulePolicy(interval_seconds=0.1),
        AdvisoryLockElection(lambda: asyncpg.connect(settings.db.writer_dsn), key),
        PostgresDatabase(pool),
        PostgresOutboxRetention(pool),
        _NoBus(),
        TOPICS,
        transient=is_transient,
    )


class _NoBus:
    async def publish(self, messages: Sequence[PendingMessage]) -> list[tuple[int, int]]:
        raise EventBusUnavailable("not in this test")


async def _until(condition: Callable[[], bool], seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.05)


async def test_one_replica_leads_and_another_takes_over_when_it_is_gone(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    key = random.randint(1, 2**40)
    first, second = _scheduler(settings, pool, key), _scheduler(settings, pool, key)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    running_first = asyncio.create_task(first.run(stop_first))
    await _until(lambda: first.is_leader)
    running_second = asyncio.create_task(second.run(stop_second))
    try:
        await asyncio.sleep(0.5)
        assert first.is_leader
        assert not second.is_leader
        assert first.cycles > 0
        assert second.cycles == 0

        # The leader's process dies: its session ends and the server drops the lock with it.
        terminated = await pool.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_locks
                WHERE locktype = 'advisory' AND granted AND objsubid = 1
                  AND (classid::bigint << 32 | objid::bigint) = $1""",
            key,
        )
        stop_first.set()  # and it does not come back
        assert terminated == 1
        await _until(lambda: second.is_leader)
        await asyncio.wait_for(running_first, 10)
        assert not first.is_leader
        await _until(lambda: second.cycles > 0)
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.wait_for(asyncio.gather(running_first, running_second), 20)


async def test_kafka_publisher_sends_in_order_with_event_ids(settings: Settings) -> None:
    topic = f"test.relay.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    messages = [
        PendingMessage(
            id=n,
            event_id=f"event-{n}",
            topic=topic,
            key="ETH-USD",
            payload=f'{{"n":{n}}}'.encode(),
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )
        for n in range(5)
    ]
    producer = new_producer(settings.kafka)
    await producer.start()
    try:
        receipts = await KafkaEventPublisher(producer, 10).publish(messages)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        got: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(20):
            while len(got) < 5:
                batch = await consumer.getmany(timeout_ms=200)
                got += [r for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    assert len({p for p, _ in receipts}) == 1  # one key, one partition
    assert [o for _, o in receipts] == sorted(o for _, o in receipts)
    assert [r.value for r in got] == [m.payload for m in messages]
    assert [dict(r.headers)[EVENT_ID_HEADER] for r in got] == [
        m.event_id.encode() for m in messages
    ]
    assert {r.key for r in got} == {b"ETH-USD"}
    assert all(dict(r.headers)["traceparent"].startswith(b"00-0af7") for r in got)
