"""`qis worker`: consume observations, store them and their consumer positions in one transaction.

Exactly-once effects: a batch's observations (and, later, what they cause) and the next
offsets of its partitions commit together in PostgreSQL. On assignment the worker seeks
to the stored positions, so a crash at any point neither loses nor duplicates an effect.
Ownership is fenced: claiming a partition bumps its epoch, and a batch whose epoch is no
longer current cannot commit. Undecodable or invalid records go to the dead-letter topic
(acknowledged before the batch commits) and never block their partition.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from app.adapters.postgres.observations import insert_observations
from app.adapters.postgres.offsets import (
    PartitionFenced,
    advance,
    claim_partitions,
    lock_partitions,
)
from app.domain.dead_letter import DeadLetter
from app.domain.observation import OBSERVATIONS_SCHEMA_VERSION, Observation, ObservationsRecorded
from app.settings import Settings
from app.telemetry.metrics import QisMetrics, noop_metrics

if TYPE_CHECKING:
    from app.adapters.postgres import Connection

_log = logging.getLogger("qis.worker")
_tracer = trace.get_tracer("qis.worker")
_records = msgspec.json.Decoder(ObservationsRecorded)
_dead_letters = msgspec.json.Encoder()

# Called inside the batch transaction with the newly stored observations (reconciliation hooks in).
# `traced`: ids of the observations that arrived in sampled records (their work is traced).
AfterStore: TypeAlias = (
    "Callable[[Connection, Sequence[Observation], Collection[str]], Awaitable[None]]"
)


async def _nothing_after_store(
    _: Connection, __: Sequence[Observation], ___: Collection[str]
) -> None:
    return None


def record_sampled(headers: Sequence[tuple[str, bytes | None]] | None) -> bool:
    """Whether a record's trace headers carry a sampled decision (W3C or X-Ray), read
    without building a context: this runs for every record."""
    for key, value in headers or ():
        if value is None:
            continue
        if key == "traceparent":
            return len(value) >= 2 and int(value[-2:], 16) & 1 == 1
        if key.lower() == "x-amzn-trace-id":
            return b"Sampled=1" in value
    return False


@dataclass
class Decoded:
    """One polled batch, split into usable observations and dead letters."""

    observations: list[Observation]
    dead_letters: list[DeadLetter]
    next_offsets: dict[int, int]
    traced: set[str] = field(default_factory=set)  # observation ids from sampled records


def decode_record(record: ConsumerRecord[bytes, bytes]) -> ObservationsRecorded:
    """Decode and check one record; raise ValueError (or msgspec errors) when it is unusable."""
    if record.value is None:
        raise ValueError("record has no value")
    decoded = _records.decode(record.value)
    if decoded.schema_version != OBSERVATIONS_SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {decoded.schema_version}")
    if record.key is not None and record.key.decode() != decoded.reference_data_id:
        raise ValueError("record key does not match reference_data_id")
    for observation in decoded.observations:
        if observation.reference_data_id != decoded.reference_data_id:
            raise ValueError("observation of another series inside the record")
    return decoded


def split_batch(batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> Decoded:
    """Decode a polled batch; each bad record becomes a dead letter with its origin."""
    observations: list[Observation] = []
    dead: list[DeadLetter] = []
    next_offsets: dict[int, int] = {}
    traced: set[str] = set()
    for tp, records in batch.items():
        for record in records:
            try:
                decoded = decode_record(record).observations
                observations.extend(decoded)
                if record_sampled(record.headers):
                    traced.update(o.observation_id for o in decoded)
            except (msgspec.DecodeError, ValueError, UnicodeDecodeError) as exc:
                dead.append(
                    DeadLetter(
                        error=f"{type(exc).__name__}: {exc}",
                        origin_topic=tp.topic,
                        origin_partition=tp.partition,
                        origin_offset=record.offset,
                        key=record.key,
                        value=record.value,
                    )
                )
        if records:
            next_offsets[tp.partition] = records[-1].offset + 1
    return Decoded(observations, dead, next_offsets, traced)


def split_lanes(
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], lanes: int
) -> list[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]]:
    """The batch's partitions dealt into at most `lanes` groups of similar record counts.

    A partition is never split: its records stay in order in one transaction, and a series
    lives in one partition (records are keyed by series), so lanes never share a series.
    """
    if lanes <= 1 or len(batch) <= 1:
        return [batch]
    groups: list[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] = [
        {} for _ in range(min(lanes, len(batch)))
    ]
    sizes = [0] * len(groups)
    for tp, records in sorted(batch.items(), key=lambda item: (-len(item[1]), item[0].partition)):
        smallest = sizes.index(min(sizes))
        groups[smallest][tp] = records
        sizes[smallest] += len(records)
    return groups


def receive_sampled(
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
) -> tuple[Context | None, list[Link]]:
    """A CONSUMER `receive` span per sampled request in the batch, in that request's trace;
    returns the context the batch's `process` span joins (the first sampled request's)
    and links to the other sampled requests' contexts.

    Only sampled records are looked at closely (`record_sampled` reads the flag from the
    raw header): extracting a context and starting a span for every record, as the
    aiokafka consumer instrumentation does, cost ~15 % of the worker's CPU at 4,000
    records/s for the ~90 % of records that are not traced (docs/tracing.md). The records
    of one request (one per series it touched) carry the same headers and get one span,
    with their count.
    """
    requests: dict[tuple[tuple[str, bytes | None], ...], list[ConsumerRecord[bytes, bytes]]] = {}
    for records in batch.values():
        for record in records:
            if record_sampled(record.headers):
                requests.setdefault(tuple(record.headers or ()), []).append(record)
    parent: Context | None = None
    links: list[Link] = []
    for headers, records in requests.items():
        context = propagate.extract({k: v.decode("latin-1") for k, v in headers if v is not None})
        first = records[0]
        span = _tracer.start_span(
            f"{first.topic} receive",
            context=context,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": first.topic,
                "messaging.destination.partition.id": str(first.partition),
                "messaging.kafka.message.offset": first.offset,
                "messaging.batch.message_count": len(records),
                "messaging.operation.type": "receive",
            },
        )
        span.end()
        if parent is None:
            parent = context
        else:
            links.append(Link(trace.get_current_span(context).get_span_context()))
    return parent, links


class ObservationWorker(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consume -> store loop, and the rebalance listener that restores positions."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        after_store: AfterStore = _nothing_after_store,
        owner: str | None = None,
        metrics: QisMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._consumer = consumer
        self._producer = producer
        self._after_store = after_store
        self._metrics = metrics or noop_metrics("worker")
        self._topic = settings.kafka.observations_topic
        self._group = settings.worker.group_id
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._epochs: dict[int, int] = {}
        self.stored = 0
        self.dead_lettered = 0

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Nothing to flush: every batch commits its positions before the next poll.
        for tp in revoked:
            self._epochs.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._restore_positions([tp for tp in assigned if tp.topic == self._topic])

    async def _restore_positions(self, assigned: Sequence[TopicPartition]) -> None:
        async with self._pool.acquire() as conn:
            claimed = await claim_partitions(
                conn, self._group, self._topic, (tp.partition for tp in assigned), self.owner
            )
        for tp in assigned:
            next_offset, epoch = claimed[tp.partition]
            self._epochs[tp.partition] = epoch
            self._consumer.seek(tp, next_offset)
        _log.info("partitions assigned", extra={"positions": claimed, "owner": self.owner})

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, store, commit; until `stop` is set, then finish the batch in hand and return."""
        self._consumer.subscribe([self._topic], listener=self)
        while not stop.is_set():
            batch = await self._consumer.getmany(
                timeout_ms=self._settings.worker.poll_timeout_ms,
                max_records=self._settings.worker.max_batch_records,
            )
            if not batch:
                continue
            try:
                await self.process(batch)
            except PartitionFenced as exc:
                _log.warning("batch dropped: partition fenced", extra={"error": str(exc)})
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                # Nothing committed: rewind to the stored positions and try again shortly.
                _log.error("batch failed; rewinding", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
                await self._rewind()

    async def _rewind(self) -> None:
        assigned = list(self._consumer.assignment())
        try:
            await self._restore_positions(assigned)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            _log.error("rewind failed; will retry", extra={"error": repr(exc)})

    async def process(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Store one polled batch and its positions atomically, in one `process` span."""
        parent, links = receive_sampled(batch)
        with _tracer.start_as_current_span(
            f"{self._topic} process",
            context=parent,
            links=links,
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.batch.message_count": sum(len(r) for r in batch.values())},
        ):
            await self._process(batch)
        await self._report_lag()

    async def _report_lag(self) -> None:
        lag = 0
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag += max(0, highwater - await self._consumer.position(tp))
        self._metrics.consumer_lag(self._topic, lag)

    async def _process(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        lanes = split_lanes(batch, self._settings.worker.lanes)
        if len(lanes) == 1:
            await self._process_lane(lanes[0])
            return
        # A lane that fails rolls back alone; the others may commit (their partitions'
        # offsets with them). The caller then rewinds every partition to its stored
        # position, so the failed lane's records are read again and nothing twice.
        outcomes = await asyncio.gather(
            *(self._process_lane(lane) for lane in lanes), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _process_lane(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        started = time.perf_counter()
        decoded = split_batch(batch)
        if decoded.dead_letters:
            await self._send_dead_letters(decoded.dead_letters)
        positions = {
            p: (offset, self._epochs.get(p, -1)) for p, offset in decoded.next_offsets.items()
        }
        async with self._pool.acquire() as conn, conn.transaction():
            await lock_partitions(conn, self._group, self._topic, positions)
            stored_ids = set(await insert_observations(conn, decoded.observations))
            new = [o for o in decoded.observations if o.observation_id in stored_ids]
            await self._after_store(conn, new, decoded.traced)
            await advance(conn, self._group, self._topic, positions, self.owner)
        self.stored += len(new)
        self.dead_lettered += len(decoded.dead_letters)
        _log.debug(
            "batch committed",
            extra={
                "partitions": len(positions),
                "observations": len(decoded.observations),
                "stored": len(new),
                "seconds": round(time.perf_counter() - started, 4),
            },
        )
        if decoded.dead_letters:
            self._metrics.dead_letters(len(decoded.dead_letters))

    async def _send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        # Acknowledged before the batch commits: a crash in between re-sends, never drops.
        topic = self._settings.kafka.dlq_topic
        futures = [
            await self._producer.send(
                topic,
                value=_dead_letters.encode(letter),
                key=letter.key,
                headers=[("qis-error", letter.error[:512].encode())],
            )
            for letter in letters
        ]
        await asyncio.gather(*futures)
        for letter in letters:
            _log.warning(
                "record dead-lettered",
                extra={
                    "error": letter.error,
                    "origin_topic": letter.origin_topic,
                    "origin_partition": letter.origin_partition,
                    "origin_offset": letter.origin_offset,
                },
            )
