"""The KRaft broker built from Maven Central jars works with aiokafka 0.14.

aiokafka's own CI only exercises old brokers, so these prove, against our broker:
idempotent producer with acks=all, consumer groups with committed offsets, and
transactions (read_committed consumers see commits, never aborts).
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.adapters.kafka import topic_partitions
from app.settings import Settings


async def _new_topic(settings: Settings, partitions: int = 3) -> str:
    name = f"test.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def _drain(consumer: AIOKafkaConsumer, want: int, seconds: float = 20) -> list[bytes]:
    got: list[bytes] = []
    async with asyncio.timeout(seconds):
        while len(got) < want:
            batch = await consumer.getmany(timeout_ms=200)
            got.extend(r.value for records in batch.values() for r in records if r.value)
    return got


async def test_project_topics_exist_with_their_partition_counts(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topic_partitions(settings.kafka)))
    finally:
        await admin.close()
    counts = {t["topic"]: len(t["partitions"]) for t in described}
    assert counts == topic_partitions(settings.kafka)


async def test_idempotent_producer_and_consumer_group(settings: Settings) -> None:
    topic = await _new_topic(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        compression_type="lz4",
    )
    await producer.start()
    try:
        sent = [f"m{i}".encode() for i in range(300)]
        futures = [
            await producer.send(topic, v, key=str(i % 7).encode()) for i, v in enumerate(sent)
        ]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert {m.topic for m in metadata} == {topic}
    assert len({(m.partition, m.offset) for m in metadata}) == 300

    group = f"g-{uuid.uuid4().hex[:8]}"

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )

    first = consumer()
    await first.start()
    try:
        received = await _drain(first, 300)
        await first.commit()
    finally:
        await first.stop()
    assert sorted(received) == sorted(sent)

    # The group's committed offsets survive the member: a new member starts at the end.
    second = consumer()
    await second.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(3)]
        committed = [await second.committed(tp) for tp in parts]
        ends = await second.end_offsets(parts)
    finally:
        await second.stop()
    assert committed == [ends[tp] for tp in parts]
    assert sum(committed) == 300


async def test_transactions_commit_and_abort(settings: Settings) -> None:
    topic = await _new_topic(settings, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        transactional_id=f"tx-{uuid.uuid4().hex[:8]}",
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1")
            await producer.send_and_wait(topic, b"committed-2")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-3")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        values = await _drain(consumer, 3)
        await asyncio.sleep(0.5)
        values += await _drain(consumer, 0)
    finally:
        await consumer.stop()
    assert values == [b"committed-1", b"committed-2", b"committed-3"]
