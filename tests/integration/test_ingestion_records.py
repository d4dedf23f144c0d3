"""What the api's ingestion log writes to Kafka: one record per partition a request touches."""

from __future__ import annotations

import uuid
from contextlib import aclosing
from datetime import UTC, datetime

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from app.adapters.kafka import KafkaIngestionLog, new_producer, read_topic
from app.domain.observation import (
    PARTITION_RECORD_SCHEMA_VERSION,
    ObservationsRecorded,
    SubmittedObservation,
)
from app.services.ingest import ingest
from app.settings import Settings

SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)


async def test_a_request_of_100_series_is_one_record_per_partition(settings: Settings) -> None:
    topic = f"test.records.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 12, 1)])
    finally:
        await admin.close()
    kafka = msgspec.structs.replace(settings.kafka, observations_topic=topic)
    items = [
        SubmittedObservation(
            reference_data_id=f"R-{i:03d}", source=f"s{i % 3}", snap=SNAP, value=i, observed_at=SNAP
        )
        for i in range(100)
    ]
    producer = new_producer(kafka)
    await producer.start()
    try:
        result = await ingest(items, KafkaIngestionLog(producer, kafka), SNAP)
    finally:
        await producer.stop()

    decoder = msgspec.json.Decoder(ObservationsRecorded)
    partitioner, partitions = DefaultPartitioner(), list(range(12))
    records = []
    async with aclosing(read_topic(kafka, topic)) as stream:
        async for record in stream:
            records.append(record)
    assert len(records) == len(
        {
            partitioner(o.encode(), partitions, partitions)
            for o in (item.reference_data_id for item in items)
        }
    )  # one record per partition touched
    seen = []
    for record in records:
        assert record.key is None
        decoded = decoder.decode(record.value or b"")
        assert decoded.schema_version == PARTITION_RECORD_SCHEMA_VERSION
        for observation in decoded.observations:
            # every series on the partition its id maps to, as with keyed records
            key = observation.reference_data_id.encode()
            assert partitioner(key, partitions, partitions) == record.partition
            seen.append(observation.observation_id)
    assert sorted(seen) == sorted(result.observation_ids)
    assert len(records) < 100
