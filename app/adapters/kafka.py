"""Kafka adapter (aiokafka): topic creation, the ingestion log producer, health."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry import propagate, trace

from app.adapters.aws_auth import MskIamTokenProvider, shared_secret
from app.domain.dead_letter import ERROR_HEADER, STAGE_HEADER, DeadLetter
from app.domain.observation import (
    ACTOR_HEADER,
    MAX_OBSERVATIONS_PER_RECORD,
    PARTITION_RECORD_SCHEMA_VERSION,
    Observation,
    ObservationsRecorded,
)
from app.ports import IngestionLogUnavailable, LogRecord
from app.settings import KafkaSettings
from app.telemetry.tracing import traced_span

_tracer = trace.get_tracer("qis.kafka")
_letters = msgspec.json.Encoder()


MAX_RECORD_BYTES = 4 * 1024 * 1024


def topic_partitions(settings: KafkaSettings) -> dict[str, int]:
    """Every topic the platform owns, with its explicit partition count."""
    return {
        settings.observations_topic: settings.observations_partitions,
        settings.dlq_topic: settings.events_partitions,
        settings.official_values_topic: settings.events_partitions,
        settings.quality_alerts_topic: settings.events_partitions,
        settings.audit_topic: settings.events_partitions,
    }


def security_options(settings: KafkaSettings) -> dict[str, Any]:
    """The TLS and SASL arguments every aiokafka client of the service is built with.

    TLS checks the brokers' certificates against `ssl_ca_file` (or the system store) and
    their host names. SCRAM credentials come from the settings or Secrets Manager (read
    once here, at client construction); MSK IAM signs a token per broker connection.
    """
    if settings.security_protocol == "PLAINTEXT":
        return {}
    context = ssl.create_default_context(cafile=settings.ssl_ca_file or None)
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    options["ssl_context"] = context
    if settings.security_protocol == "SASL_SSL":
        if settings.sasl_mechanism == "AWS_MSK_IAM":
            options["sasl_mechanism"] = "OAUTHBEARER"
            options["sasl_oauth_token_provider"] = MskIamTokenProvider(settings.aws_region)
        else:
            username, password = settings.sasl_username, settings.sasl_password
            if settings.sasl_secret_id:
                credentials = shared_secret(settings.sasl_secret_id, settings.aws_region).get()
                username, password = credentials.username or username, credentials.password
            options["sasl_mechanism"] = settings.sasl_mechanism
            options["sasl_plain_username"] = username
            options["sasl_plain_password"] = password
    return options


async def ensure_topics(
    settings: KafkaSettings, replication_factor: int | None = None
) -> list[str]:
    """Create missing topics via the admin client (no broker auto-creation); return created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=settings.request_timeout_ms,
        **security_options(settings),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=count,
                replication_factor=replication_factor or settings.replication_factor,
                # A 2 MiB request of one series with large attributes is one ~2.5 MB record.
                topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)},
            )
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
        max_request_size=MAX_RECORD_BYTES + 65_536,
        request_timeout_ms=settings.request_timeout_ms,
        **security_options(settings),
    )


class PartitionBatcher:
    """Coalesces the records of concurrent requests into one batch per partition.

    aiokafka drains one batch per partition per produce request, and one produce request
    per broker is in flight, so a batch per HTTP request would cap ingestion at one
    request per round trip. Here a partition has at most one batch of ours in flight:
    records that arrive meanwhile wait and leave together in the next batch. An idle
    partition sends at once (no linger); a busy one batches by itself. Building batches
    with `create_batch`/`send_batch` also skips `send()`'s per-record Python overhead.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._pending: dict[
            int, list[tuple[bytes | None, bytes, list[tuple[str, bytes]], Any]]
        ] = {}
        self._flushing: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self, partition: int, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        """Queue one record; the future resolves when the broker acknowledged it."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(partition, []).append((key, value, headers, waiter))
        if partition not in self._flushing:
            self._flushing.add(partition)
            task = asyncio.create_task(self._flush(partition))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return waiter

    async def _flush(self, partition: int) -> None:
        try:
            while self._pending.get(partition):
                queued = self._pending.pop(partition)
                batch = self._producer.create_batch()
                taken = 0
                for key, value, headers, waiter in queued:
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        if taken == 0:  # one record larger than a whole batch: send it alone
                            await self._send_alone(partition, key, value, headers, waiter)
                            taken = 1
                        break
                    taken += 1
                if taken < len(queued):  # what did not fit goes first next round
                    self._pending[partition] = queued[taken:] + self._pending.get(partition, [])
                waiters = [w for _, _, _, w in queued[:taken] if not w.done()]
                if batch.record_count() == 0:
                    continue
                try:
                    delivered = await self._producer.send_batch(
                        batch, self._topic, partition=partition
                    )
                    await delivered
                except Exception as exc:  # every waiter of this batch learns the failure
                    for waiter in waiters:
                        _settle(waiter, exc)
                else:
                    for waiter in waiters:
                        _settle(waiter, None)
        finally:
            self._flushing.discard(partition)

    async def _send_alone(
        self,
        partition: int,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        waiter: asyncio.Future[None],
    ) -> None:
        try:
            delivered = await self._producer.send(
                self._topic, value=value, key=key, partition=partition, headers=headers
            )
            await delivered
        except Exception as exc:
            _settle(waiter, exc)
        else:
            _settle(waiter, None)


def _settle(waiter: asyncio.Future[None], error: BaseException | None) -> None:
    if waiter.done():  # the request gave up (timeout) meanwhile
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)


def _context_headers() -> list[tuple[str, bytes]]:
    """The current trace context as record headers, computed once per request: every
    record of the request shares this one list (traceparent and X-Amzn-Trace-Id)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


class KafkaIngestionLog:
    """Produces `ObservationsRecorded` to the observations topic, one record per partition
    a request touches.

    Partitions come from the murmur2 partitioner the Java clients use on the series id,
    over all partitions, so a series always lands on the same partition. The trace context is
    injected once per request into every record's headers, under one PRODUCER span when
    the request is sampled (unsampled requests propagate their own, unsampled, context).
    """

    def __init__(self, producer: AIOKafkaProducer, settings: KafkaSettings) -> None:
        self._producer = producer
        self._topic = settings.observations_topic
        self._timeout = settings.ack_timeout_seconds
        self._encoder = msgspec.json.Encoder()
        self._partitioner = DefaultPartitioner()
        self._batcher = PartitionBatcher(producer, self._topic)
        # murmur2 is pure Python in aiokafka; series ids repeat, so remember each answer.
        self._partition_of: dict[tuple[bytes, int], int] = {}

    async def append(
        self, records: Sequence[ObservationsRecorded], actor: str | None = None
    ) -> None:
        """Send every record and wait for all acknowledgements within the ack timeout.

        `actor` goes in each record's `qis-actor` header (ACTOR_HEADER)."""
        try:
            async with asyncio.timeout(self._timeout):
                # No span under a request that is not sampled (it would not be recorded
                # either): the request's context (its trace id, not sampled) still goes
                # downstream in the headers, so the worker does not trace. Without any
                # context, the span is a root and the sampler decides.
                current = trace.get_current_span()
                with traced_span(
                    _tracer,
                    f"{self._topic} send",
                    current.is_recording() or not current.get_span_context().is_valid,
                    kind=trace.SpanKind.PRODUCER,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.destination.name": self._topic,
                        "messaging.batch.message_count": len(records),
                    },
                ):
                    headers = _context_headers()
                    if actor:
                        headers.append((ACTOR_HEADER, actor.encode()))
                    await self._send(records, headers)
        except (TimeoutError, KafkaError) as exc:
            raise IngestionLogUnavailable(f"ingestion log did not acknowledge: {exc!r}") from exc

    async def _send(
        self, records: Sequence[ObservationsRecorded], headers: list[tuple[str, bytes]]
    ) -> None:
        """One record per partition the request touches (version 2), not one per series:
        the partition, not the record, is what keeps a series in order, and each record
        costs the producer a future and a batch entry."""
        partitions = sorted(await self._producer.partitions_for(self._topic))
        by_partition: dict[int, list[Observation]] = {}
        for record in records:
            for observation in record.observations:
                partition = self._partition(observation.reference_data_id.encode(), partitions)
                by_partition.setdefault(partition, []).append(observation)
        await asyncio.gather(
            *(
                self._batcher.submit(
                    partition,
                    None,
                    self._encoder.encode(
                        ObservationsRecorded(
                            schema_version=PARTITION_RECORD_SCHEMA_VERSION,
                            observations=observations[start : start + MAX_OBSERVATIONS_PER_RECORD],
                        )
                    ),
                    headers,
                )
                for partition, observations in by_partition.items()
                for start in range(0, len(observations), MAX_OBSERVATIONS_PER_RECORD)
            )
        )

    def _partition(self, key: bytes, partitions: list[int]) -> int:
        partition = self._partition_of.get((key, len(partitions)), -1)
        if partition < 0:
            if len(self._partition_of) > 100_000:
                self._partition_of.clear()
            partition = self._partitioner(key, partitions, partitions)
            self._partition_of[(key, len(partitions))] = partition
        return partition


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
        **security_options(settings),
    )


class TopicNotFound(LookupError):
    """The topic does not exist on the cluster."""


async def read_topic(
    settings: KafkaSettings, topic: str, stall_seconds: float = 30.0
) -> AsyncGenerator[ConsumerRecord[bytes, bytes], None]:
    """Every committed record of `topic` from the beginning to its end as of the call.

    No consumer group (nothing is committed, no member joins); each partition is read up
    to the end offset taken at the start, so the read stops by itself even while records
    keep arriving. Raises TopicNotFound, KafkaError when no broker answers, and
    TimeoutError when no partition advances for `stall_seconds`. Use with
    `contextlib.aclosing` when the loop may stop early.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-reader",
        request_timeout_ms=settings.request_timeout_ms,
        **security_options(settings),
    )
    try:
        await admin.start()
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise TopicNotFound(topic)
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-reader",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=settings.request_timeout_ms,
        fetch_max_wait_ms=100,
        **security_options(settings),
    )
    try:
        await consumer.start()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        positions = {tp: starts[tp] for tp in partitions if ends[tp] > starts[tp]}
        progress_at = time.monotonic()
        while positions:
            batch = await consumer.getmany(*positions, timeout_ms=200)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
            for tp, before in list(positions.items()):
                # The position also moves past transaction markers, which are not records.
                position = await consumer.position(tp)
                if position >= ends[tp]:
                    del positions[tp]
                elif position > before:
                    positions[tp] = position
                else:
                    continue
                progress_at = time.monotonic()
            if time.monotonic() - progress_at > stall_seconds:
                raise TimeoutError(f"reading {topic}: no progress for {stall_seconds:g} s")
    finally:
        await consumer.stop()


# --- The worker's side: the consumer group member and the dead-letter topic. ---------


class KafkaLogSource:
    """`LogSource` over a group member that never auto-commits: positions live in
    PostgreSQL. `listen(on_assigned, on_revoked)` subscribes with a rebalance listener
    that tells the consume service about partition moves."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic

    def listen(
        self,
        on_assigned: Callable[[list[int]], Awaitable[None]],
        on_revoked: Callable[[list[int]], None],
    ) -> None:
        topic = self._topic

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
                on_revoked([tp.partition for tp in revoked if tp.topic == topic])

            async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
                await on_assigned([tp.partition for tp in assigned if tp.topic == topic])

        self._consumer.subscribe([topic], listener=Listener())

    async def poll(self, max_records: int, timeout_ms: int) -> dict[int, list[LogRecord]]:
        polled = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {
            tp.partition: [
                LogRecord(
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    key=r.key,
                    value=r.value,
                    headers=tuple((k, v) for k, v in r.headers or () if v is not None),
                    timestamp_ms=r.timestamp,
                )
                for r in records
            ]
            for tp, records in polled.items()
            if records
        }

    def assigned(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(self._topic, partition), offset)

    async def lag(self) -> int | None:
        lag = 0
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag += max(0, highwater - await self._consumer.position(tp))
        return lag


class KafkaDeadLetterSink:
    """`DeadLetterSink`: letters keyed like their records, with the error and the stage
    in headers; returns once the broker acknowledged every one."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, max_bytes: int) -> None:
        self._producer = producer
        self._topic = topic
        self._max_bytes = max_bytes

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        futures = [
            await self._producer.send(
                self._topic,
                value=self._encode(letter),
                key=letter.key,
                headers=[
                    (ERROR_HEADER, letter.error[:512].encode()),
                    (STAGE_HEADER, letter.stage.encode()),
                ],
            )
            for letter in letters
        ]
        await asyncio.gather(*futures)

    def _encode(self, letter: DeadLetter) -> bytes:
        """The letter's bytes; without the original payload when it would not fit in one
        Kafka batch (the origin topic, partition and offset still point at it)."""
        encoded = _letters.encode(letter)
        if len(encoded) <= self._max_bytes - 1024:
            return encoded
        return _letters.encode(
            msgspec.structs.replace(
                letter,
                value=None,
                headers=[],
                error=f"{letter.error} (original record too large to carry: {len(encoded)} bytes)",
            )
        )
