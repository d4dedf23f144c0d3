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
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from app.adapters.failures import is_transient
from app.adapters.postgres.observations import insert_observations
from app.adapters.postgres.offsets import (
    PartitionFenced,
    advance,
    claim_partitions,
    lock_partitions,
)
from app.domain.bounds import observation_problems
from app.domain.dead_letter import (
    ERROR_HEADER,
    STAGE_HEADER,
    DeadLetter,
    DeadLetterStage,
    storable_text,
)
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
            try:
                return len(value) >= 2 and int(value[-2:], 16) & 1 == 1
            except ValueError:  # a malformed header from some producer: not sampled
                return False
        if key.lower() == "x-amzn-trace-id":
            return b"Sampled=1" in value
    return False


@dataclass(frozen=True)
class Unit:
    """One polled record: its observations, or the dead letter it became at decoding.

    The unit of isolation: a batch that fails for a reason that would fail again is
    bisected down to the records that cause it, and only those are set aside.
    """

    tp: TopicPartition
    record: ConsumerRecord[bytes, bytes]
    observations: list[Observation]
    dead_letter: DeadLetter | None = None
    traced: bool = False
    # The partition's ownership epoch when the batch was taken on: every transaction of
    # the batch (bisection included) is fenced with it, so once a rebalance hands the
    # partition over, not even a part of the batch commits.
    epoch: int = -1


@dataclass
class Decoded:
    """One polled batch, split into usable observations and dead letters."""

    observations: list[Observation]
    dead_letters: list[DeadLetter]
    next_offsets: dict[int, int]
    traced: set[str] = field(default_factory=set)  # observation ids from sampled records


def error_text(exc: BaseException) -> str:
    """An exception as one storable line: `Type: message`."""
    return storable_text(f"{type(exc).__name__}: {exc}")


def dead_letter(
    tp: TopicPartition,
    record: ConsumerRecord[bytes, bytes],
    stage: DeadLetterStage,
    error: str,
) -> DeadLetter:
    """`record` set aside at `stage`, with everything needed to replay it."""
    key = record.key
    series: str | None = None
    if key is not None:
        try:
            series = storable_text(key.decode(), 256)
        except UnicodeDecodeError:
            series = None
    return DeadLetter(
        error=storable_text(error),
        stage=stage,
        dead_lettered_at=datetime.now(UTC),
        reference_data_id=series,
        origin_topic=tp.topic,
        origin_partition=tp.partition,
        origin_offset=record.offset,
        origin_timestamp_ms=record.timestamp,
        key=key,
        value=record.value,
        headers=[(storable_text(k, 256), v) for k, v in record.headers or () if v is not None],
    )


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
        problems = observation_problems(observation)
        if problems:
            raise ValueError(f"observation {observation.observation_id!r}: {'; '.join(problems)}")
    return decoded


def decode_units(
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    epochs: dict[int, int] | None = None,
) -> list[Unit]:
    """Every record of the batch as a unit, partitions one after the other, each in order.

    Decoding never raises: a record that cannot be used becomes a `decode` dead letter.
    """
    units: list[Unit] = []
    for tp, records in batch.items():
        epoch = (epochs or {}).get(tp.partition, -1)
        for record in records:
            try:
                observations = decode_record(record).observations
            except Exception as exc:  # anything a record can make the decoder do
                letter = dead_letter(tp, record, "decode", error_text(exc))
                units.append(Unit(tp, record, [], letter, epoch=epoch))
                continue
            traced = record_sampled(record.headers)
            units.append(Unit(tp, record, observations, None, traced, epoch))
    return units


def split_batch(batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> Decoded:
    """Decode a polled batch; each bad record becomes a dead letter with its origin."""
    return _decoded(decode_units(batch))


def _decoded(units: Sequence[Unit]) -> Decoded:
    observations: list[Observation] = []
    dead: list[DeadLetter] = []
    next_offsets: dict[int, int] = {}
    traced: set[str] = set()
    for unit in units:
        if unit.dead_letter is not None:
            dead.append(unit.dead_letter)
        observations.extend(unit.observations)
        if unit.traced:
            traced.update(o.observation_id for o in unit.observations)
        next_offsets[unit.tp.partition] = max(
            next_offsets.get(unit.tp.partition, 0), unit.record.offset + 1
        )
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


class StageFailed(Exception):
    """A deterministic failure of a batch transaction, at `stage`."""

    def __init__(self, stage: DeadLetterStage, cause: BaseException) -> None:
        super().__init__(f"{stage}: {error_text(cause)}")
        self.stage: DeadLetterStage = stage
        self.cause = cause


# Set aside a record whose snap failed to reconcile: the hook records the failure (audit,
# alert event) in the transaction that moves the partition past the record.
OnSetAside: TypeAlias = "Callable[[Connection, Sequence[Observation], str], Awaitable[None]]"


async def _nothing_on_set_aside(_: Connection, __: Sequence[Observation], ___: str) -> None:
    return None


class ObservationWorker(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consume -> store loop, and the rebalance listener that restores positions.

    No record can stop it: a transient failure is retried with bounded backoff from the
    stored positions; a deterministic one is bisected down to the records that cause it,
    which go to the dead-letter topic (with the error and the stage that failed) while
    the rest of the batch commits.
    """

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        after_store: AfterStore = _nothing_after_store,
        owner: str | None = None,
        metrics: QisMetrics | None = None,
        on_set_aside: OnSetAside = _nothing_on_set_aside,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._consumer = consumer
        self._producer = producer
        self._after_store = after_store
        self._on_set_aside = on_set_aside
        self._metrics = metrics or noop_metrics("worker")
        self._topic = settings.kafka.observations_topic
        self._group = settings.worker.group_id
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._epochs: dict[int, int] = {}
        self.stored = 0
        self.dead_lettered = 0
        self.transactions = 0  # batch transactions attempted (bisection included)
        self.retries = 0  # transient failures retried
        self._backoff = settings.worker.retry_initial_seconds

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
                continue
            except Exception as exc:  # the worker outlives whatever a batch does
                # Nothing committed for the failed lane: rewind to the stored positions and
                # read it again after a pause that grows while the failure lasts.
                self.retries += 1
                _log.error(
                    "batch failed; rewinding",
                    extra={"error": error_text(exc), "retry_in_seconds": self._backoff},
                )
                await _wait(stop, self._backoff)
                self._backoff = min(self._backoff * 2, self._settings.worker.retry_max_seconds)
                await self._rewind()
                continue
            self._backoff = self._settings.worker.retry_initial_seconds

    async def _rewind(self) -> None:
        assigned = list(self._consumer.assignment())
        try:
            await self._restore_positions(assigned)
        except Exception as exc:
            _log.error("rewind failed; will retry", extra={"error": error_text(exc)})

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
        try:
            for tp in self._consumer.assignment():
                highwater = self._consumer.highwater(tp)
                if highwater is not None:
                    lag += max(0, highwater - await self._consumer.position(tp))
        except Exception as exc:  # a partition revoked meanwhile: report next time
            _log.debug("lag not measured", extra={"error": error_text(exc)})
            return
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
        units = decode_units(batch, dict(self._epochs))
        letters = [u.dead_letter for u in units if u.dead_letter is not None]
        if letters:
            await self._send_dead_letters(letters)
        outcome = await self._commit_retrying(units)
        if isinstance(outcome, StageFailed):
            _log.warning(
                "batch failed deterministically; isolating",
                extra={"stage": outcome.stage, "error": error_text(outcome.cause)},
            )
            stored = await self._isolate(units, outcome)
        else:
            stored = outcome
        self.stored += stored
        _log.debug(
            "batch committed",
            extra={
                "partitions": len(batch),
                "records": len(units),
                "stored": stored,
                "seconds": round(time.perf_counter() - started, 4),
            },
        )

    async def _commit_retrying(self, units: Sequence[Unit]) -> int | StageFailed:
        """`_commit`, with transient failures retried in place (backing off).

        Returns how many observations were stored, or the deterministic failure. A
        transient failure that outlasts `retry_attempts` is raised: the run loop rewinds
        to the stored positions and tries the batch again, for as long as it lasts.
        """
        delay = self._settings.worker.retry_initial_seconds
        attempt = 1
        while True:
            try:
                return await self._commit(units)
            except StageFailed as failure:
                return failure
            except PartitionFenced:
                raise
            except Exception as exc:
                if attempt >= self._settings.worker.retry_attempts:
                    raise
                self.retries += 1
                _log.warning(
                    "batch failed; retrying",
                    extra={"error": error_text(exc), "attempt": attempt, "delay": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.worker.retry_max_seconds)
                attempt += 1

    async def _isolate(self, units: Sequence[Unit], failure: StageFailed) -> int:
        """Commit the two halves of `units` one after the other, recursively, until each
        failing record is alone, and set those aside; return how many were stored.

        Units are in partition order, each partition's records in offset order, so the
        first half holds a partition's earlier records: positions only move forward, and
        a series' observations are stored in the order they were logged.
        """
        if len(units) == 1:
            await self._set_aside(units[0], failure)
            return 0
        middle = len(units) // 2
        stored = 0
        for half in (units[:middle], units[middle:]):
            outcome = await self._commit_retrying(half)
            if isinstance(outcome, StageFailed):
                stored += await self._isolate(half, outcome)
            else:
                stored += outcome
        return stored

    async def _commit(self, units: Sequence[Unit]) -> int:
        """One transaction: store the units' observations, reconcile what they touched and
        advance their partitions past them (fenced). A deterministic failure is raised as
        `StageFailed` naming the stage; anything transient as it is."""
        decoded = _decoded(units)
        epochs = {u.tp.partition: u.epoch for u in units}
        positions = {p: (offset, epochs[p]) for p, offset in decoded.next_offsets.items()}
        self.transactions += 1
        stage: DeadLetterStage = "commit"
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await lock_partitions(conn, self._group, self._topic, positions)
                stage = "store"
                stored_ids = set(await insert_observations(conn, decoded.observations))
                new = [o for o in decoded.observations if o.observation_id in stored_ids]
                stage = "reconcile"
                await self._after_store(conn, new, decoded.traced)
                stage = "commit"
                await advance(conn, self._group, self._topic, positions, self.owner)
        except PartitionFenced:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            raise StageFailed(stage, exc) from exc
        return len(new)

    async def _set_aside(self, unit: Unit, failure: StageFailed) -> None:
        """Dead-letter one record that fails on its own, then move its partition past it.

        The letter is acknowledged before the position moves: a crash in between sends it
        again (a duplicate letter), never loses it. A record whose snap failed to reconcile
        is also recorded in the database (`on_set_aside`: audit record and alert event).
        """
        error = error_text(failure.cause)
        if unit.dead_letter is None:
            await self._send_dead_letters([dead_letter(unit.tp, unit.record, failure.stage, error)])
        partition = unit.tp.partition
        positions = {partition: (unit.record.offset + 1, unit.epoch)}
        record_it = failure.stage == "reconcile" and bool(unit.observations)
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await lock_partitions(conn, self._group, self._topic, positions)
                    if record_it:
                        await self._on_set_aside(conn, unit.observations, error)
                    await advance(conn, self._group, self._topic, positions, self.owner)
                return
            except PartitionFenced:
                raise
            except Exception as exc:
                if is_transient(exc) or not record_it:
                    raise
                # Recording the failure fails too: move past the record without it (the
                # dead letter and the log keep what happened).
                _log.error("recording a failed snap failed", extra={"error": error_text(exc)})
                record_it = False

    async def _send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        # Acknowledged before the batch commits: a crash in between re-sends, never drops.
        topic = self._settings.kafka.dlq_topic
        futures = [
            await self._producer.send(
                topic,
                value=_encode_letter(letter, self._settings.kafka.max_batch_bytes),
                key=letter.key,
                headers=[
                    (ERROR_HEADER, letter.error[:512].encode()),
                    (STAGE_HEADER, letter.stage.encode()),
                ],
            )
            for letter in letters
        ]
        await asyncio.gather(*futures)
        by_stage: dict[DeadLetterStage, int] = {}
        for letter in letters:
            by_stage[letter.stage] = by_stage.get(letter.stage, 0) + 1
            _log.warning(
                "record dead-lettered",
                extra={
                    "stage": letter.stage,
                    "error": letter.error,
                    "reference_data_id": letter.reference_data_id,
                    "origin_topic": letter.origin_topic,
                    "origin_partition": letter.origin_partition,
                    "origin_offset": letter.origin_offset,
                },
            )
        for stage, count in by_stage.items():
            self._metrics.dead_letters(count, stage)
        self.dead_lettered += len(letters)


def _encode_letter(letter: DeadLetter, limit: int) -> bytes:
    """The letter's bytes; without the original payload when it would not fit in one
    Kafka batch (the origin topic, partition and offset still point at it)."""
    encoded = _dead_letters.encode(letter)
    if len(encoded) <= limit - 1024:
        return encoded
    return _dead_letters.encode(
        msgspec.structs.replace(
            letter,
            value=None,
            headers=[],
            error=f"{letter.error} (original record too large to carry: {len(encoded)} bytes)",
        )
    )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, returning early when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
