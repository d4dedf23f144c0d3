"""In-memory fakes of the consume service's ports, with the PostgreSQL adapters' rules:
a transaction commits all or nothing, positions are fenced by owner and epoch, inserting
an observation id twice stores it once."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import msgspec

from app.domain.dead_letter import DeadLetter
from app.domain.observation import (
    OBSERVATIONS_SCHEMA_VERSION,
    Observation,
    ObservationsRecorded,
    derive_observation_id,
)
from app.ports import LogRecord, PartitionFenced, PipelineStore
from tests.unit.services.fakes import FakeDatabase, FakeStore

_encode = msgspec.json.Encoder()


class _Positions:
    def __init__(self) -> None:
        # partition -> (next offset, owner, epoch)
        self.rows: dict[int, tuple[int, str, int]] = {}
        self.observations: dict[str, Observation] = {}


class FakeBatch:
    """`BatchTransaction` over a copy of the state, applied on commit."""

    def __init__(self, state: _Positions, pipeline: FakeStore, fail: FailureScript) -> None:
        self._s = state
        self.pipeline: PipelineStore = pipeline
        self._fail = fail

    async def lock_partitions(self, partitions: Sequence[int]) -> None:
        self._fail.maybe("lock", partitions)

    async def insert_observations(self, observations: Sequence[Observation]) -> list[str]:
        self._fail.maybe("store", observations)
        new = [o for o in observations if o.observation_id not in self._s.observations]
        for observation in new:
            self._s.observations[observation.observation_id] = observation
        return [o.observation_id for o in new]

    async def advance(self, positions: Mapping[int, tuple[int, int]], owner: str) -> None:
        self._fail.maybe("advance", positions)
        for partition, (next_offset, epoch) in sorted(positions.items()):
            _, row_owner, row_epoch = self._s.rows.get(partition, (0, "", 0))
            if (row_owner, row_epoch) != (owner, epoch):
                raise PartitionFenced(f"partition {partition} was claimed by another consumer")
            self._s.rows[partition] = (next_offset, owner, epoch)


class FailureScript:
    """Raise at a step while `when(step, argument)` says so."""

    def __init__(self) -> None:
        self.when: Callable[[str, object], BaseException | None] = lambda _, __: None

    def maybe(self, step: str, argument: object) -> None:
        error = self.when(step, argument)
        if error is not None:
            raise error


class FakeBatchStore:
    """`BatchStore` in memory; `database` is the pipeline state the hooks see."""

    def __init__(self) -> None:
        self.state = _Positions()
        self.database = FakeDatabase()
        self.fail = FailureScript()
        self.commits = 0
        self.after_commit: Callable[[], None] = lambda: None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeBatch]:
        saved = copy.deepcopy(self.state.__dict__)
        async with self.database.transaction() as pipeline:
            try:
                yield FakeBatch(self.state, pipeline, self.fail)
            except BaseException:
                self.state.__dict__.update(saved)
                raise
        self.commits += 1
        self.after_commit()

    async def claim(self, partitions: Sequence[int], owner: str) -> dict[int, tuple[int, int]]:
        claimed = {}
        for partition in sorted(partitions):
            next_offset, _, epoch = self.state.rows.get(partition, (0, "", 0))
            self.state.rows[partition] = (next_offset, owner, epoch + 1)
            claimed[partition] = (next_offset, epoch + 1)
        return claimed

    def position(self, partition: int) -> int:
        return self.state.rows.get(partition, (0, "", 0))[0]


class FakeSource:
    """`LogSource` over fixed partitions of records: poll returns what follows each
    partition's position, at most `max_records` in all."""

    def __init__(self, partitions: Mapping[int, Sequence[LogRecord]]) -> None:
        self.log = {p: list(records) for p, records in partitions.items()}
        self.positions = dict.fromkeys(self.log, 0)
        self.seeks: list[tuple[int, int]] = []
        self.polls = 0

    async def poll(self, max_records: int, timeout_ms: int) -> dict[int, list[LogRecord]]:
        self.polls += 1
        out: dict[int, list[LogRecord]] = {}
        left = max_records
        for partition, records in self.log.items():
            taken = [r for r in records if r.offset >= self.positions[partition]][:left]
            if taken:
                out[partition] = taken
                self.positions[partition] = taken[-1].offset + 1
                left -= len(taken)
        if not out:
            await asyncio.sleep(0)
        return out

    def assigned(self) -> list[int]:
        return sorted(self.log)

    def seek(self, partition: int, offset: int) -> None:
        self.seeks.append((partition, offset))
        self.positions[partition] = offset

    async def lag(self) -> int | None:
        return sum(
            len([r for r in records if r.offset >= self.positions[p]])
            for p, records in self.log.items()
        )


class FakeSink:
    """`DeadLetterSink` that keeps the letters."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)


def observation(series: str, source: str, value: float = 100.0) -> Observation:
    return Observation(
        observation_id=derive_observation_id(series, source, SNAP, value, SNAP, None),
        reference_data_id=series,
        source=source,
        snap=SNAP,
        value=value,
        observed_at=SNAP,
        received_at=SNAP,
    )


def record(partition: int, offset: int, series: str, *sources: str) -> LogRecord:
    """A record of one series with one observation per source."""
    value = _encode.encode(
        ObservationsRecorded(
            schema_version=OBSERVATIONS_SCHEMA_VERSION,
            reference_data_id=series,
            observations=[observation(series, s) for s in sources],
        )
    )
    return LogRecord(
        topic="qis.observations.v1",
        partition=partition,
        offset=offset,
        key=series.encode(),
        value=value,
    )
