"""In-memory fakes of the pipeline ports: the rules of the PostgreSQL adapters, no database."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from app.domain.audit import GENESIS_HASH, AuditRecord, audit_record
from app.domain.observation import Observation
from app.domain.reconciliation import Reconciliation
from app.domain.series import Series, SeriesConfig
from app.domain.versions import OfficialValue, VersionDecision
from app.ports import (
    AuditEntry,
    EventBusUnavailable,
    OutboxMessage,
    PendingMessage,
    SnapKey,
    SnapState,
)


class _State:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.series: dict[str, Series] = {}
        self.observations: list[Observation] = []
        self.versions: dict[SnapKey, list[OfficialValue]] = {}
        self.snaps: dict[SnapKey, SnapState] = {}
        self.audit: list[AuditRecord] = []
        self.outbox: list[PendingMessage] = []
        self.published: set[int] = set()
        self.set_aside: dict[int, str] = {}
        self.positions: dict[str, int] = {}


class FakeStore:
    """`PipelineStore` over plain Python collections; enforces the journal rule."""

    def __init__(self, state: _State) -> None:
        self._s = state
        self._journal_open = False
        self.locked: list[str] = []

    async def lock_series(self, reference_data_ids: Sequence[str]) -> None:
        self.locked.extend(sorted(set(reference_data_ids)))

    async def clock(self) -> datetime:
        return self._s.now

    async def series(self, reference_data_ids: Sequence[str]) -> dict[str, Series]:
        return {i: self._s.series[i] for i in reference_data_ids if i in self._s.series}

    async def create_missing_series(
        self, reference_data_ids: Sequence[str], config: SeriesConfig
    ) -> list[Series]:
        created = []
        for series_id in sorted(set(reference_data_ids)):
            if series_id not in self._s.series:
                series = Series(reference_data_id=series_id, config=config, updated_at=self._s.now)
                self._s.series[series_id] = series
                created.append(series)
        return created

    async def save_series(
        self, reference_data_id: str, config: SeriesConfig, updated_at: datetime
    ) -> Series:
        series = Series(reference_data_id=reference_data_id, config=config, updated_at=updated_at)
        self._s.series[reference_data_id] = series
        return series

    async def observations(self, keys: Sequence[SnapKey]) -> dict[SnapKey, list[Observation]]:
        wanted = set(keys)
        grouped: dict[SnapKey, list[Observation]] = {}
        for o in self._s.observations:
            key = (o.reference_data_id, o.snap)
            if key in wanted:
                grouped.setdefault(key, []).append(o)
        return grouped

    async def latest_versions(self, keys: Sequence[SnapKey]) -> dict[SnapKey, OfficialValue]:
        return {k: self._s.versions[k][-1] for k in keys if self._s.versions.get(k)}

    async def previous_values(
        self, keys: Sequence[SnapKey]
    ) -> dict[SnapKey, tuple[datetime, float]]:
        found: dict[SnapKey, tuple[datetime, float]] = {}
        for series_id, snap in keys:
            earlier = sorted(
                (k for k in self._s.versions if k[0] == series_id and k[1] < snap),
                key=lambda k: k[1],
            )
            if earlier:
                latest = self._s.versions[earlier[-1]][-1]
                found[(series_id, snap)] = (latest.snap, latest.value)
        return found

    async def snap_states(self, keys: Sequence[SnapKey]) -> dict[SnapKey, SnapState]:
        return {k: self._s.snaps[k] for k in keys if k in self._s.snaps}

    async def save_snap_states(self, states: Sequence[SnapState]) -> None:
        for state in states:
            self._s.snaps[(state.reference_data_id, state.snap)] = state

    async def due_snaps(self, limit: int) -> list[SnapKey]:
        due = [
            s
            for s in self._s.snaps.values()
            if s.state == "open" and s.window_closes_at <= self._s.now
        ]
        due.sort(key=lambda s: s.window_closes_at)
        return [(s.reference_data_id, s.snap) for s in due[:limit]]

    async def open_journal(self) -> datetime:
        self._journal_open = True
        return self._s.now

    async def insert_versions(self, versions: Sequence[OfficialValue]) -> None:
        for official in versions:
            key = (official.reference_data_id, official.snap)
            existing = self._s.versions.setdefault(key, [])
            assert official.version == len(existing) + 1, "version numbers are dense"
            existing.append(official)

    async def append_audit(self, entries: Sequence[AuditEntry], at: datetime) -> list[AuditRecord]:
        assert self._journal_open, "journal must be open"
        prev = self._s.audit[-1].hash if self._s.audit else GENESIS_HASH
        records = []
        for entry in entries:
            record = audit_record(
                prev,
                actor=entry.actor,
                action=entry.action,
                entity_type=entry.entity_type,
                entity_id=entry.entity_id,
                before=entry.before,
                after=entry.after,
                at=at,
            )
            record = msgspec.structs.replace(record, seq=len(self._s.audit) + 1)
            self._s.audit.append(record)
            records.append(record)
            prev = record.hash
        return records

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        assert self._journal_open, "journal must be open"
        known = {m.event_id for m in self._s.outbox}
        for message in messages:
            if message.event_id in known:
                continue
            self._s.outbox.append(
                PendingMessage(id=len(self._s.outbox) + 1, **msgspec.structs.asdict(message))
            )

    async def unpublished(self, limit: int) -> list[PendingMessage]:
        done = self._s.published | set(self._s.set_aside)
        return [m for m in self._s.outbox if m.id not in done][:limit]

    async def outbox_after(
        self, position: int, topics: Sequence[str], limit: int
    ) -> list[PendingMessage]:
        return [m for m in self._s.outbox if m.id > position and m.topic in topics][:limit]

    async def mark_published(self, ids: Sequence[int]) -> list[int]:
        marked = sorted(set(ids) - self._s.published)
        self._s.published.update(marked)
        return marked

    async def set_aside(self, reasons: Mapping[int, str]) -> None:
        for id_, reason in reasons.items():
            if id_ not in self._s.published:
                self._s.set_aside[id_] = reason

    async def audit_after(self, seq: int, limit: int) -> list[AuditRecord]:
        return [r for r in self._s.audit if (r.seq or 0) > seq][:limit]

    async def relay_position(self, name: str) -> int:
        return self._s.positions.get(name, 0)

    async def open_relay_position(self, name: str) -> int:
        end = self._s.outbox[-1].id if self._s.outbox else 0
        return self._s.positions.setdefault(name, end)

    async def save_relay_position(self, name: str, position: int) -> None:
        self._s.positions[name] = max(position, self._s.positions.get(name, 0))


class FakeDatabase:
    """`PipelineDatabase`: each transaction commits on success and rolls back on error."""

    def __init__(self, now: datetime | None = None) -> None:
        self.state = _State(now or datetime(2026, 1, 15, 14, 0, 5, tzinfo=UTC))
        self.last_store: FakeStore | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeStore]:
        saved = copy.deepcopy(self.state.__dict__)
        store = FakeStore(self.state)
        self.last_store = store
        try:
            yield store
        except BaseException:
            self.state.__dict__.update(saved)
            raise

    def advance(self, seconds: float) -> None:
        self.state.now += timedelta(seconds=seconds)

    def store_observations(self, observations: Sequence[Observation]) -> list[Observation]:
        """Insert like the worker does: a known id is not stored again."""
        known = {o.observation_id for o in self.state.observations}
        new = [o for o in observations if o.observation_id not in known]
        self.state.observations.extend(new)
        return new

    def versions(self, series_id: str, snap: datetime) -> list[OfficialValue]:
        return list(self.state.versions.get((series_id, snap), []))

    def messages(self, topic: str) -> list[PendingMessage]:
        return [m for m in self.state.outbox if m.topic == topic]

    def actions(self) -> list[str]:
        return [r.action for r in self.state.audit]


class FakePublisher:
    """`EventPublisher` that records what it sent; `fail` makes the next call raise."""

    def __init__(self) -> None:
        self.sent: list[PendingMessage] = []
        self.fail = False

    async def publish(self, messages: Sequence[PendingMessage]) -> list[tuple[int, int]]:
        if self.fail:
            self.fail = False
            raise EventBusUnavailable("broker down")
        receipts = []
        for message in messages:
            receipts.append((0, len(self.sent)))
            self.sent.append(message)
        return receipts


def payload(message: OutboxMessage) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(message.payload)
    return decoded


class RecordingMetrics:
    """`Metrics` that keeps every call as (method, arguments)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def reconciliation(self, succeeded: bool) -> None:
        self.calls.append(("reconciliation", (succeeded,)))

    def quality_score(self, score: float, series: str) -> None:
        self.calls.append(("quality_score", (score, series)))

    def dead_letters(self, count: int, stage: str) -> None:
        self.calls.append(("dead_letters", (count, stage)))

    def publication_freshness(self, seconds: float) -> None:
        self.calls.append(("publication_freshness", (seconds,)))

    def cache_lookup(self, level: str, hit: bool) -> None:
        self.calls.append(("cache_lookup", (level, hit)))

    def cache_fallback(self) -> None:
        self.calls.append(("cache_fallback", ()))

    def consumer_lag(self, topic: str, lag: int) -> None:
        self.calls.append(("consumer_lag", (topic, lag)))

    def named(self, method: str) -> list[tuple[Any, ...]]:
        return [arguments for name, arguments in self.calls if name == method]


class RecordedStep:
    """One traced step of `RecordingTracing`: what it was opened for and what it recorded."""

    def __init__(self, name: str, key: SnapKey | None, traced: bool) -> None:
        self.name = name
        self.key = key
        self.traced = traced
        self.open = False
        self.recorded: dict[str, Any] = {}

    def reconciled(
        self,
        config: SeriesConfig,
        observations: Sequence[Observation],
        result: Reconciliation,
    ) -> None:
        assert self.open, "recorded outside its step"
        self.recorded = {"config": config, "observations": list(observations), "result": result}

    def assessed(
        self, config: SeriesConfig, result: Reconciliation, decision: VersionDecision
    ) -> None:
        assert self.open, "recorded outside its step"
        self.recorded = {"config": config, "result": result, "decision": decision}


class RecordingTracing:
    """`Tracing` that keeps every step the service opens (traced or not) and hands out
    `headers` as the current trace context while `recording`."""

    def __init__(self, *, recording: bool = True, headers: dict[str, str] | None = None) -> None:
        self.is_recording = recording
        self.headers = headers if headers is not None else {"traceparent": "00-test-01"}
        self.steps: list[RecordedStep] = []
        self.relayed: list[list[str]] = []  # event ids per outbox_relay span

    def recording(self) -> bool:
        return self.is_recording

    def reconciliation(self, key: SnapKey, traced: bool) -> AbstractContextManager[RecordedStep]:
        return self._step("multi-source-reconciliation", key, traced)

    def quality_assessment(
        self, key: SnapKey, traced: bool
    ) -> AbstractContextManager[RecordedStep]:
        return self._step("quality-assessment", key, traced)

    @contextmanager
    def _step(self, name: str, key: SnapKey | None, traced: bool) -> Iterator[RecordedStep]:
        step = RecordedStep(name, key, traced)
        self.steps.append(step)
        step.open = True
        try:
            yield step
        finally:
            step.open = False

    @contextmanager
    def outbox_relay(self, messages: Sequence[OutboxMessage]) -> Iterator[None]:
        self.relayed.append([m.event_id for m in messages])
        yield

    def trace_headers(self) -> dict[str, str]:
        return dict(self.headers) if self.is_recording else {}
