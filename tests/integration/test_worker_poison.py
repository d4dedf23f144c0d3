"""No record stops the worker: poison records are dead-lettered, everything else is stored.

The worker runs in this process against the real PostgreSQL and Kafka, on a topic, a
dead-letter topic and a consumer group of its own. Records are produced raw, as a
producer other than the api (an older release, a tool, an attacker with broker access)
could: the worker must judge them by the api's rules itself.

A reconciliation that fails deterministically is simulated by wrapping the real
reconciliation stage: it raises for any observation from the source `poison`, as a bug in
the domain would. Everything else is the production code.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from app.adapters.kafka import ensure_topics, new_consumer, new_producer, read_topic
from app.domain.dead_letter import DeadLetter
from app.domain.events import ReconciliationFailed, decode_event
from app.domain.observation import (
    OBSERVATIONS_SCHEMA_VERSION,
    Observation,
    ObservationsRecorded,
    derive_observation_id,
)
from app.entrypoints.dlq import replay_dead_letters
from app.entrypoints.worker import build_consumer, reconciling
from app.ports import PipelineStore
from app.services.consume import Consumer
from app.services.dead_letters import Selection
from app.settings import KafkaSettings, Settings, WorkerSettings
from tests.conftest import unique_series

pytestmark = pytest.mark.integration

_encode = msgspec.json.Encoder()
_letters = msgspec.json.Decoder(DeadLetter)


class DomainBug(TypeError):
    """What the simulated reconciliation bug raises."""


@dataclass
class Running:
    settings: Settings
    worker: Consumer
    task: asyncio.Task[None]
    stop: asyncio.Event


def observation(series: str, source: str, snap: datetime, value: float) -> Observation:
    observed_at = snap
    return Observation(
        observation_id=derive_observation_id(series, source, snap, value, observed_at, None),
        reference_data_id=series,
        source=source,
        snap=snap,
        value=value,
        observed_at=observed_at,
        received_at=datetime.now(UTC),
    )


def record(series: str, observations: Sequence[Observation]) -> bytes:
    return _encode.encode(
        ObservationsRecorded(
            schema_version=OBSERVATIONS_SCHEMA_VERSION,
            reference_data_id=series,
            observations=list(observations),
        )
    )


def consensus(series: str, snap: datetime) -> list[Observation]:
    return [observation(series, s, snap, v) for s, v in (("a", 100.0), ("b", 100.01), ("c", 99.99))]


@pytest.fixture
async def kafka(settings: Settings) -> KafkaSettings:
    name = uuid.uuid4().hex[:8]
    own = msgspec.structs.replace(
        settings.kafka,
        observations_topic=f"test.poison.{name}",
        dlq_topic=f"test.poison.{name}.dlq",
        observations_partitions=2,
    )
    await ensure_topics(own)
    return own


async def start_worker(
    settings: Settings, pool: asyncpg.Pool, kafka: KafkaSettings, group: str, *, buggy: bool
) -> Running:
    own = msgspec.structs.replace(
        settings,
        kafka=kafka,
        worker=WorkerSettings(group_id=group, retry_initial_seconds=0.05, retry_max_seconds=0.2),
    )
    stage, _ = reconciling(own, None)

    async def after_store(
        store: PipelineStore,
        new: Sequence[Observation],
        traced: Collection[str],
        actors: Mapping[str, str],
    ) -> None:
        if buggy and any(o.source == "poison" for o in new):
            raise DomainBug("can't compare offset-naive and offset-aware datetimes")
        await stage(store, new, traced, actors)

    producer = new_producer(kafka)
    kafka_consumer = new_consumer(kafka, group, "poison-test")
    await producer.start()
    await kafka_consumer.start()
    worker = build_consumer(own, pool, kafka_consumer, producer, after_store=after_store)
    stop = asyncio.Event()

    async def run() -> None:
        try:
            await worker.run(stop)
        finally:
            await kafka_consumer.stop()
            await producer.stop()

    return Running(own, worker, asyncio.create_task(run()), stop)


async def stop_worker(running: Running) -> None:
    running.stop.set()
    await asyncio.wait_for(running.task, 30)


@pytest.fixture
async def producer(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = new_producer(kafka)
    await producer.start()
    yield producer
    await producer.stop()


async def wait_for(pool: asyncpg.Pool, query: str, *args: object, seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):
        while not await pool.fetchval(query, *args):
            await asyncio.sleep(0.1)


async def dead_letters(kafka: KafkaSettings) -> list[DeadLetter]:
    return [_letters.decode(r.value or b"") async for r in read_topic(kafka, kafka.dlq_topic)]


async def count_observations(pool: asyncpg.Pool, series: str, snap: datetime) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM observations WHERE reference_data_id = $1 AND snap = $2",
        series,
        snap,
    )
    return count


async def test_poison_records_are_dead_lettered_and_the_partition_goes_on(
    settings: Settings, pool: asyncpg.Pool, kafka: KafkaSettings, producer: AIOKafkaProducer
) -> None:
    series = unique_series("P")
    key = series.encode()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    before, poisoned, after = base, base + timedelta(seconds=1), base + timedelta(seconds=2)
    year5 = datetime(5, 4, 5, 6, tzinfo=UTC)
    nul = observation(series, "a\x00", before, 1.0)
    bad_time = msgspec.structs.replace(observation(series, "a", year5, 1.0), observed_at=year5)
    sent = [
        (record(series, consensus(series, before)), None),
        (
            record(
                series,
                [observation(series, "poison", poisoned, 100.0), *consensus(series, poisoned)[:1]],
            ),
            "reconcile",
        ),
        (b'{"schema_version": 1, "reference_data_id": ', "decode"),  # not JSON
        (record(series, [nul]), "decode"),  # NUL: PostgreSQL cannot store it
        (record(series, [bad_time]), "decode"),  # year 5: the domain cannot compare it
        (record(series, consensus(series, after)), None),
    ]
    # One send after the other, all keyed by the series: one partition, in this order.
    metadata = [await producer.send_and_wait(kafka.observations_topic, v, key=key) for v, _ in sent]
    offsets = [m.offset for m in metadata]
    (partition,) = {m.partition for m in metadata}

    running = await start_worker(
        settings, pool, kafka, f"poison-{uuid.uuid4().hex[:8]}", buggy=True
    )
    try:
        # The record after all the poison is stored and published.
        await wait_for(
            pool,
            "SELECT count(*) FROM official_values WHERE reference_data_id = $1 AND snap = $2",
            series,
            after,
        )
        async with asyncio.timeout(30):
            while len(letters := await dead_letters(kafka)) < 4:
                await asyncio.sleep(0.2)
        assert not running.task.done()  # the worker is still up
    finally:
        await stop_worker(running)

    # Exactly the four poison records, each with its stage, error and origin.
    by_offset = {letter.origin_offset: letter for letter in letters}
    expected = {offsets[i]: stage for i, (_, stage) in enumerate(sent) if stage is not None}
    assert {o: letter.stage for o, letter in by_offset.items()} == expected
    for letter in letters:
        assert letter.origin_topic == kafka.observations_topic
        assert letter.origin_partition == partition
        assert letter.reference_data_id == series
        assert letter.key == key
        assert letter.value == sent[offsets.index(letter.origin_offset)][0]
        assert letter.dead_lettered_at is not None
    assert "DomainBug" in by_offset[offsets[1]].error
    assert "DecodeError" in by_offset[offsets[2]].error
    assert "NUL" in by_offset[offsets[3]].error or "\\x00" in by_offset[offsets[3]].error
    assert "0005" in by_offset[offsets[4]].error or "1970" in by_offset[offsets[4]].error

    # Everything else stored exactly once; the poisoned record's observations not at all.
    assert await count_observations(pool, series, before) == 3
    assert await count_observations(pool, series, after) == 3
    assert await count_observations(pool, series, poisoned) == 0
    published = await pool.fetch(
        "SELECT snap, version FROM official_values WHERE reference_data_id = $1 ORDER BY snap",
        series,
    )
    assert [(r["snap"], r["version"]) for r in published] == [(before, 1), (after, 1)]

    # The failed snap is audited and alerted.
    audit = await pool.fetch(
        "SELECT actor, after FROM audit_log WHERE action = 'snap.reconciliation_failed'"
        " AND entity_id LIKE $1",
        f"{series}/%",
    )
    assert len(audit) == 1
    assert audit[0]["actor"] == "worker"
    alerts = await pool.fetch(
        "SELECT payload FROM outbox WHERE key = $1 AND topic = $2",
        series,
        settings.kafka.quality_alerts_topic,
    )
    events = [decode_event(bytes(r["payload"])) for r in alerts]
    failed = [e for e in events if isinstance(e, ReconciliationFailed)]
    assert [(e.reference_data_id, e.snap, e.stage) for e in failed] == [
        (series, poisoned, "reconcile")
    ]
    assert "DomainBug" in failed[0].error

    # The partition's position is past the last record: nothing will be read again.
    position = await pool.fetchval(
        "SELECT next_offset FROM consumer_offsets WHERE topic = $1 AND partition = $2",
        kafka.observations_topic,
        partition,
    )
    assert position == offsets[-1] + 1


async def test_a_fixed_record_replayed_from_the_dead_letters_is_stored_once(
    settings: Settings, pool: asyncpg.Pool, kafka: KafkaSettings, producer: AIOKafkaProducer
) -> None:
    series = unique_series("R")
    snap = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    poisoned = [observation(series, "poison", snap, 100.0), *consensus(series, snap)[:2]]
    await producer.send_and_wait(
        kafka.observations_topic, record(series, poisoned), key=series.encode()
    )
    group = f"replay-{uuid.uuid4().hex[:8]}"
    running = await start_worker(settings, pool, kafka, group, buggy=True)
    try:
        async with asyncio.timeout(30):
            while not await dead_letters(kafka):
                await asyncio.sleep(0.2)
    finally:
        await stop_worker(running)
    assert await count_observations(pool, series, snap) == 0
    # One letter; two when a rebalance fenced the position move after the letter was
    # acknowledged (the record is read and set aside again: a duplicate, never a loss).
    letters = [d for d in await dead_letters(kafka) if d.reference_data_id == series]
    assert 1 <= len(letters) <= 2
    assert {(d.stage, d.origin_offset, d.value) for d in letters} == {
        ("reconcile", letters[0].origin_offset, letters[0].value)
    }

    # "After a fix": the same worker group without the bug; replay twice.
    running = await start_worker(settings, pool, kafka, group, buggy=False)
    try:
        for _ in range(2):
            report = await replay_dead_letters(
                running.settings.kafka, Selection(series=frozenset({series}), stage="reconcile")
            )
            assert len(report.replayed) == len(letters)
            assert not report.failed
        await wait_for(
            pool,
            "SELECT count(*) FROM official_values WHERE reference_data_id = $1 AND snap = $2",
            series,
            snap,
        )
        # Both replays consumed: the position is past the second one.
        async with asyncio.timeout(30):
            while (
                running.worker.counters.stored < 3
                or await pool.fetchval(
                    "SELECT sum(next_offset) FROM consumer_offsets"
                    " WHERE topic = $1 AND group_id = $2",
                    kafka.observations_topic,
                    group,
                )
                < 3
            ):
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        await stop_worker(running)
    assert await count_observations(pool, series, snap) == 3
    assert running.worker.counters.stored == 3  # the second replay stored nothing
    versions = await pool.fetch(
        "SELECT version FROM official_values WHERE reference_data_id = $1 AND snap = $2",
        series,
        snap,
    )
    assert [r["version"] for r in versions] == [1]
