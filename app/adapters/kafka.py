"""Kafka adapter (aiokafka): topic creation, the ingestion log producer, health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from app.domain.observation import ObservationsRecorded
from app.ports import IngestionLogUnavailable
from app.settings import KafkaSettings


def topic_partitions(settings: KafkaSettings) -> dict[str, int]:
    """Every topic the platform owns, with its explicit partition count."""
    return {
        settings.observations_topic: settings.observations_partitions,
        settings.dlq_topic: settings.events_partitions,
        settings.official_values_topic: settings.events_partitions,
        settings.quality_alerts_topic: settings.events_partitions,
        settings.audit_topic: settings.events_partitions,
    }


async def ensure_topics(settings: KafkaSettings, replication_factor: int = 1) -> list[str]:
    """Create missing topics via the admin client (no broker auto-creation); return created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=count, replication_factor=replication_factor)
            for name, count in topic_partitions(settings).items()
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()


def new_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    """Idempotent, acks=all, compressed and batched: acknowledged means replicated."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        acks="all",
        enable_idempotence=True,
        compression_type=None if settings.compression == "none" else settings.compression,
        linger_ms=settings.linger_ms,
        max_batch_size=settings.max_batch_bytes,
        max_request_size=max(settings.max_batch_bytes, 1_048_576) * 4,
        request_timeout_ms=settings.request_timeout_ms,
    )


class KafkaIngestionLog:
    """Produces `ObservationsRecorded` to the observations topic, keyed by series id."""

    def __init__(self, producer: AIOKafkaProducer, settings: KafkaSettings) -> None:
        self._producer = producer
        self._topic = settings.observations_topic
        self._timeout = settings.ack_timeout_seconds
        self._encoder = msgspec.json.Encoder()

    async def append(self, records: Sequence[ObservationsRecorded]) -> None:
        """Send every record and wait for all acknowledgements within the ack timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                pending = [
                    await self._producer.send(
                        self._topic,
                        value=self._encoder.encode(record),
                        key=record.reference_data_id.encode(),
                    )
                    for record in records
                ]
                await asyncio.gather(*pending)
        except (TimeoutError, KafkaError) as exc:
            raise IngestionLogUnavailable(f"ingestion log did not acknowledge: {exc!r}") from exc


class KafkaHealth:
    """Readiness: a broker answers a metadata request."""

    name = "kafka"

    def __init__(self, producer: AIOKafkaProducer, timeout_seconds: float = 1.0) -> None:
        self._producer = producer
        self._timeout = timeout_seconds

    async def ping(self) -> None:
        # A metadata round trip, not a cached connection state: it proves a broker answers.
        async with asyncio.timeout(self._timeout):
            await self._producer.client.fetch_all_metadata()


def new_consumer(settings: KafkaSettings, group_id: str, client_id: str) -> AIOKafkaConsumer:
    """A group member that never auto-commits: positions live in PostgreSQL."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        fetch_max_wait_ms=100,
    )
