"""Consume the ingestion log: store observations exactly once, reconcile what they touch.

Exactly-once effects: a batch's observations, what they cause (versions, audit, outbox)
and the next positions of its partitions commit together (`BatchStore`). On assignment
the consumer claims its partitions, which bumps their ownership epoch, and reads on from
the stored positions, so a crash at any point neither loses nor duplicates an effect.
A batch whose epoch is no longer current (another member claimed the partition since)
cannot commit (`PartitionFenced`).

No record can stop it:
- a record that cannot be decoded, or breaks the input bounds (`app/domain/bounds.py`),
  becomes a `decode` dead letter;
- a transient failure (connection, broker, conflict, timeout: the injected `transient`
  classifier decides) is retried in place with backoff, then raised so the run loop
  rewinds to the stored positions and tries again, for as long as it lasts;
- anything else would fail again with the same records: the batch is bisected until each
  failing record is alone; that record goes to the dead-letter sink with its stage and
  error, and its partition moves past it. A record whose snap failed to reconcile is also
  recorded (`on_set_aside`: audit record and alert event).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from app.domain.bounds import observation_problems
from app.domain.dead_letter import DeadLetter, DeadLetterStage, error_text, storable_text
from app.domain.observation import (
    ACTOR_HEADER,
    OBSERVATIONS_SCHEMA_VERSION,
    PARTITION_RECORD_SCHEMA_VERSION,
    Observation,
    ObservationsRecorded,
)
from app.ports import (
    BatchStore,
    ConsumeTracing,
    DeadLetterSink,
    LogRecord,
    LogSource,
    Metrics,
    PartitionFenced,
    PipelineStore,
)
from app.services.waiting import wait_any

_log = logging.getLogger("qis.worker")
_records = msgspec.json.Decoder(ObservationsRecorded)

Batch = dict[int, list[LogRecord]]  # partition -> its records in offset order

# Called inside the batch transaction with the newly stored observations (reconciliation
# hooks in). `traced`: ids of the observations that arrived in sampled records; `actors`:
# who submitted each observation (its record's `qis-actor` header), by observation id.
AfterStore = Callable[
    [PipelineStore, Sequence[Observation], Collection[str], Mapping[str, str]], Awaitable[None]
]
# Called in the transaction that moves past a record whose snap failed to reconcile.
OnSetAside = Callable[[PipelineStore, Sequence[Observation], str], Awaitable[None]]


async def _nothing_after_store(
    _: PipelineStore, __: Sequence[Observation], ___: object, ____: object
) -> None:
    return None


async def _nothing_on_set_aside(_: PipelineStore, __: Sequence[Observation], ___: str) -> None:
    return None


class ConsumeCounters(msgspec.Struct, kw_only=True):
    """What the consumer has done since it started (tests and benchmarks read these)."""

    stored: int = 0  # observations stored
    dead_lettered: int = 0  # records set aside
    transactions: int = 0  # batch transactions attempted, bisection included
    retries: int = 0  # transient failures retried


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures: `attempts` in place, waiting `initial` doubling to `longest`
    seconds; then the run loop rewinds and keeps trying at a pause growing to `longest`."""

    attempts: int = 3
    initial: float = 0.5
    longest: float = 30.0


@dataclass(frozen=True)
class Unit:
    """One polled record: its observations, or the dead letter it became at decoding.

    The unit of isolation: a batch that fails for a reason that would fail again is
    bisected down to the records that cause it, and only those are set aside.
    """

    record: LogRecord
    observations: list[Observation]
    dead_letter: DeadLetter | None = None
    traced: bool = False
    actor: str | None = None
    # The partition's ownership epoch when the batch was taken on: every transaction of
    # the batch (bisection included) is fenced with it, so once a rebalance hands the
    # partition over, not even a part of the batch commits.
    epoch: int = -1


@dataclass
class Decoded:
    """Units merged for one transaction."""

    observations: list[Observation]
    dead_letters: list[DeadLetter]
    next_offsets: dict[int, int]
    traced: set[str] = field(default_factory=set)  # observation ids from sampled records
    actors: dict[str, str] = field(default_factory=dict)  # observation id -> who submitted it


class StageFailed(Exception):
    """A deterministic failure of a batch transaction, at `stage`."""

    def __init__(self, stage: DeadLetterStage, cause: BaseException) -> None:
        super().__init__(f"{stage}: {error_text(cause)}")
        self.stage: DeadLetterStage = stage
        self.cause = cause


def dead_letter(record: LogRecord, stage: DeadLetterStage, error: str) -> DeadLetter:
    """`record` set aside at `stage`, with everything needed to replay it."""
    series: str | None = None
    if record.key is not None:
        try:
            series = storable_text(record.key.decode(), 256)
        except UnicodeDecodeError:
            series = None
    return DeadLetter(
        error=storable_text(error),
        stage=stage,
        dead_lettered_at=datetime.now(UTC),
        reference_data_id=series,
        origin_topic=record.topic,
        origin_partition=record.partition,
        origin_offset=record.offset,
        origin_timestamp_ms=record.timestamp_ms,
        key=record.key,
        value=record.value,
        headers=[(storable_text(k, 256), v) for k, v in record.headers],
    )


def decode_record(record: LogRecord) -> ObservationsRecorded:
    """Decode and check one record; raise ValueError (or msgspec errors) when it is unusable."""
    if record.value is None:
        raise ValueError("record has no value")
    decoded = _records.decode(record.value)
    if decoded.schema_version == OBSERVATIONS_SCHEMA_VERSION:
        if decoded.reference_data_id is None:
            raise ValueError("a version 1 record names its reference_data_id")
        if record.key is not None and record.key.decode() != decoded.reference_data_id:
            raise ValueError("record key does not match reference_data_id")
    elif decoded.schema_version == PARTITION_RECORD_SCHEMA_VERSION:
        if decoded.reference_data_id is not None:
            raise ValueError("a version 2 record holds several series: no reference_data_id")
    else:
        raise ValueError(f"unsupported schema_version {decoded.schema_version}")
    for observation in decoded.observations:
        if decoded.reference_data_id not in (None, observation.reference_data_id):
            raise ValueError("observation of another series inside the record")
        problems = observation_problems(observation)
        if problems:
            raise ValueError(f"observation {observation.observation_id!r}: {'; '.join(problems)}")
    return decoded


def actor_of(headers: Sequence[tuple[str, bytes]]) -> str | None:
    """The record's `qis-actor` header (bounded, printable), None without one."""
    for name, value in headers:
        if name == ACTOR_HEADER and value:
            return storable_text(value.decode(errors="replace"), 256)
    return None


def _first_of_each(observations: Sequence[Observation]) -> list[Observation]:
    """The observations without repeats of a (series, snap, id) key, the store's key: the
    first of each, in their order (so a series keeps its log order)."""
    seen: set[tuple[str, datetime, str]] = set()
    first: list[Observation] = []
    for observation in observations:
        key = (observation.reference_data_id, observation.snap, observation.observation_id)
        if key not in seen:
            seen.add(key)
            first.append(observation)
    return first


def iter_units(
    batch: Batch,
    epochs: dict[int, int] | None = None,
    sampled: Callable[[Sequence[tuple[str, bytes]]], bool] = lambda _: False,
) -> Iterator[Unit]:
    """Every record of the batch as a unit, partitions one after the other, each in order,
    decoded as it is reached.

    Decoding never raises: a record that cannot be used becomes a `decode` dead letter.
    """
    for partition, records in batch.items():
        epoch = (epochs or {}).get(partition, -1)
        for record in records:
            try:
                observations = decode_record(record).observations
            except Exception as exc:  # anything a record can make the decoder do
                letter = dead_letter(record, "decode", error_text(exc))
                yield Unit(record, [], letter, epoch=epoch)
                continue
            yield Unit(
                record,
                observations,
                None,
                sampled(record.headers),
                actor_of(record.headers),
                epoch,
            )


def decode_units(
    batch: Batch,
    epochs: dict[int, int] | None = None,
    sampled: Callable[[Sequence[tuple[str, bytes]]], bool] = lambda _: False,
) -> list[Unit]:
    """`iter_units`, all of them."""
    return list(iter_units(batch, epochs, sampled))


def transactions(units: Iterable[Unit], max_observations: int) -> Iterator[list[Unit]]:
    """The units in order, cut into runs of at most `max_observations` observations (a
    record is never cut: one holding more is a run of its own). A record carries up to a
    whole request's observations for its partition, so a batch bounded in records only
    could be one transaction of millions of observations after a backlog."""
    run: list[Unit] = []
    count = 0
    for unit in units:
        size = len(unit.observations)
        if run and count + size > max_observations:
            yield run
            run, count = [], 0
        run.append(unit)
        count += size
    if run:
        yield run


def merge(units: Sequence[Unit]) -> Decoded:
    """The units' observations, dead letters, sampled ids and next offsets, together."""
    observations: list[Observation] = []
    dead: list[DeadLetter] = []
    next_offsets: dict[int, int] = {}
    traced: set[str] = set()
    actors: dict[str, str] = {}
    for unit in units:
        if unit.dead_letter is not None:
            dead.append(unit.dead_letter)
        observations.extend(unit.observations)
        if unit.traced:
            traced.update(o.observation_id for o in unit.observations)
        if unit.actor is not None:
            actors.update((o.observation_id, unit.actor) for o in unit.observations)
        partition = unit.record.partition
        next_offsets[partition] = max(next_offsets.get(partition, 0), unit.record.offset + 1)
    return Decoded(observations, dead, next_offsets, traced, actors)


def split_lanes(batch: Batch, lanes: int) -> list[Batch]:
    """The batch's partitions dealt into at most `lanes` groups of similar record counts.

    A partition is never split: its records stay in order in one transaction, and a series
    lives in one partition (records are keyed by series), so lanes never share a series.
    """
    if lanes <= 1 or len(batch) <= 1:
        return [batch]
    groups: list[Batch] = [{} for _ in range(min(lanes, len(batch)))]
    sizes = [0] * len(groups)
    for partition, records in sorted(batch.items(), key=lambda item: (-len(item[1]), item[0])):
        smallest = sizes.index(min(sizes))
        groups[smallest][partition] = records
        sizes[smallest] += len(records)
    return groups


class NoTracing:
    """`ConsumeTracing` that records nothing."""

    def record_sampled(self, headers: Sequence[tuple[str, bytes]]) -> bool:
        return False

    def batch(self, records: Sequence[LogRecord]) -> _Nothing:
        return _Nothing()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


class Consumer:
    """The consume -> store loop of one group member (see the module docstring)."""

    def __init__(
        self,
        *,
        topic: str,
        owner: str,
        store: BatchStore,
        source: LogSource,
        dead_letters: DeadLetterSink,
        transient: Callable[[BaseException], bool],
        after_store: AfterStore = _nothing_after_store,
        on_set_aside: OnSetAside = _nothing_on_set_aside,
        metrics: Metrics | None = None,
        tracing: ConsumeTracing | None = None,
        retry: RetryPolicy | None = None,
        max_batch_records: int = 5000,
        max_transaction_observations: int = 5000,
        poll_timeout_ms: int = 200,
        lanes: int = 1,
    ) -> None:
        self.topic = topic
        self.owner = owner
        self._store = store
        self._source = source
        self._sink = dead_letters
        self._transient = transient
        self._after_store = after_store
        self._on_set_aside = on_set_aside
        self._metrics = metrics
        self._tracing: ConsumeTracing = tracing or NoTracing()
        self._retry = retry or RetryPolicy()
        self._max_batch_records = max_batch_records
        self._max_transaction_observations = max_transaction_observations
        self._poll_timeout_ms = poll_timeout_ms
        self._lanes = lanes
        self._epochs: dict[int, int] = {}
        self._pause = self._retry.initial
        self.counters = ConsumeCounters()

    # --- group membership ------------------------------------------------------------

    async def assigned(self, partitions: Sequence[int]) -> None:
        """Claim newly assigned partitions and read on from their stored positions."""
        claimed = await self._store.claim(partitions, self.owner)
        for partition in partitions:
            next_offset, epoch = claimed[partition]
            self._epochs[partition] = epoch
            self._source.seek(partition, next_offset)
        _log.info("partitions assigned", extra={"positions": claimed, "owner": self.owner})

    def revoked(self, partitions: Sequence[int]) -> None:
        """Nothing to flush: every batch commits its positions before the next poll."""
        for partition in partitions:
            self._epochs.pop(partition, None)

    # --- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, store, commit; until `stop` is set, then finish the batch in hand and return."""
        while not stop.is_set():
            batch = await self._source.poll(self._max_batch_records, self._poll_timeout_ms)
            if not batch:
                continue
            try:
                await self.process(batch)
            except PartitionFenced as exc:
                _log.warning("batch dropped: partition fenced", extra={"error": str(exc)})
                continue
            except Exception as exc:  # the consumer outlives whatever a batch does
                # Nothing committed for the failed lane: rewind to the stored positions and
                # read it again after a pause that grows while the failure lasts.
                self.counters.retries += 1
                _log.error(
                    "batch failed; rewinding",
                    extra={"error": error_text(exc), "retry_in_seconds": self._pause},
                )
                await wait_any(stop, self._pause)
                self._pause = min(self._pause * 2, self._retry.longest)
                await self._rewind()
                continue
            self._pause = self._retry.initial

    async def _rewind(self) -> None:
        try:
            await self.assigned(self._source.assigned())
        except Exception as exc:
            _log.error("rewind failed; will retry", extra={"error": error_text(exc)})

    async def process(self, batch: Batch) -> None:
        """Store one polled batch and its positions, lane by lane, in one batch span."""
        with self._tracing.batch([r for records in batch.values() for r in records]):
            lanes = split_lanes(batch, self._lanes)
            if len(lanes) == 1:
                await self._process_lane(lanes[0])
            else:
                # A lane that fails rolls back alone; the others may commit (their
                # partitions' positions with them). The run loop then rewinds every
                # partition to its stored position: the failed lane is read again.
                outcomes = await asyncio.gather(
                    *(self._process_lane(lane) for lane in lanes), return_exceptions=True
                )
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome
        await self._report_lag()

    async def _report_lag(self) -> None:
        if self._metrics is None:
            return
        try:
            lag = await self._source.lag()
        except Exception as exc:  # a partition revoked meanwhile: report next time
            _log.debug("lag not measured", extra={"error": error_text(exc)})
            return
        if lag is not None:
            self._metrics.consumer_lag(self.topic, lag)

    async def _process_lane(self, batch: Batch) -> None:
        """The lane's records in transactions of at most `max_transaction_observations`
        observations, one after the other: each commits its partitions' positions, so a
        failure in a later one rewinds only past what is not committed."""
        units = iter_units(batch, dict(self._epochs), self._tracing.record_sampled)
        for run in transactions(units, self._max_transaction_observations):
            await self._process_units(run, len(batch))

    async def _process_units(self, units: Sequence[Unit], partitions: int) -> None:
        started = time.perf_counter()
        letters = [u.dead_letter for u in units if u.dead_letter is not None]
        if letters:
            await self._send(letters)
        outcome = await self._commit_retrying(units)
        if isinstance(outcome, StageFailed):
            _log.warning(
                "batch failed deterministically; isolating",
                extra={"stage": outcome.stage, "error": error_text(outcome.cause)},
            )
            stored = await self._isolate(units, outcome)
        else:
            stored = outcome
        self.counters.stored += stored
        _log.debug(
            "batch committed",
            extra={
                "partitions": partitions,
                "records": len(units),
                "stored": stored,
                "seconds": round(time.perf_counter() - started, 4),
            },
        )

    async def _commit_retrying(self, units: Sequence[Unit]) -> int | StageFailed:
        """`_commit`, with transient failures retried in place (backing off).

        Returns how many observations were stored, or the deterministic failure. A
        transient failure that outlasts the attempts is raised: the run loop rewinds to
        the stored positions and tries the batch again, for as long as it lasts.
        """
        delay = self._retry.initial
        attempt = 1
        while True:
            try:
                return await self._commit(units)
            except StageFailed as failure:
                return failure
            except PartitionFenced:
                raise
            except Exception as exc:
                if attempt >= self._retry.attempts:
                    raise
                self.counters.retries += 1
                _log.warning(
                    "batch failed; retrying",
                    extra={"error": error_text(exc), "attempt": attempt, "delay": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry.longest)
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
        merged = merge(units)
        epochs = {u.record.partition: u.epoch for u in units}
        positions = {p: (offset, epochs[p]) for p, offset in merged.next_offsets.items()}
        self.counters.transactions += 1
        stage: DeadLetterStage = "commit"
        try:
            async with self._store.transaction() as tx:
                await tx.lock_partitions(sorted(positions))
                stage = "store"
                # A batch may hold one observation several times (a record and its replay,
                # a client's retry): it is stored, reconciled and counted once.
                unique = _first_of_each(merged.observations)
                stored_ids = set(await tx.insert_observations(unique))
                new = [o for o in unique if o.observation_id in stored_ids]
                stage = "reconcile"
                await self._after_store(tx.pipeline, new, merged.traced, merged.actors)
                stage = "commit"
                await tx.advance(positions, self.owner)
        except PartitionFenced:
            raise
        except Exception as exc:
            if self._transient(exc):
                raise
            raise StageFailed(stage, exc) from exc
        return len(new)

    async def _set_aside(self, unit: Unit, failure: StageFailed) -> None:
        """Dead-letter one record that fails on its own, then move its partition past it.

        The letter is acknowledged before the position moves: a crash in between sends it
        again (a duplicate letter), never loses it.
        """
        error = error_text(failure.cause)
        if unit.dead_letter is None:
            await self._send([dead_letter(unit.record, failure.stage, error)])
        partition = unit.record.partition
        positions = {partition: (unit.record.offset + 1, unit.epoch)}
        record_it = failure.stage == "reconcile" and bool(unit.observations)
        while True:
            try:
                async with self._store.transaction() as tx:
                    await tx.lock_partitions([partition])
                    if record_it:
                        await self._on_set_aside(tx.pipeline, unit.observations, error)
                    await tx.advance(positions, self.owner)
                return
            except PartitionFenced:
                raise
            except Exception as exc:
                if self._transient(exc) or not record_it:
                    raise
                # Recording the failure fails too: move past the record without it (the
                # dead letter and the log keep what happened).
                _log.error("recording a failed snap failed", extra={"error": error_text(exc)})
                record_it = False

    async def _send(self, letters: Sequence[DeadLetter]) -> None:
        """Dead letters, acknowledged, logged and counted per stage."""
        await self._sink.send(letters)
        by_stage: dict[str, int] = {}
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
        if self._metrics is not None:
            for stage, count in by_stage.items():
                self._metrics.dead_letters(count, stage)
        self.counters.dead_lettered += len(letters)
