"""Ports: what the services need from the outside world, as Protocols."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

from app.domain.audit import AuditRecord
from app.domain.observation import Observation, ObservationsRecorded
from app.domain.reading import Granularity, HistoryItem, QualitySummary
from app.domain.series import Series, SeriesConfig
from app.domain.versions import OfficialValue


class IngestionLogUnavailable(RuntimeError):
    """The ingestion log did not acknowledge in time; nothing may be acknowledged to the client."""


# runtime_checkable: Litestar checks injected dependencies against their declared type.
@runtime_checkable
class IngestionLog(Protocol):
    """Durable log of accepted observations (Kafka in production)."""

    async def append(self, records: Sequence[ObservationsRecorded]) -> None:
        """Return once every record is acknowledged; else raise IngestionLogUnavailable."""
        ...


@runtime_checkable
class HealthCheck(Protocol):
    """A dependency the readiness probe asks about.

    A check may also have `required = False` (Redis): when it fails, readiness says
    "degraded" instead of failing (see `app/api/routes/health.py`).
    """

    name: str

    async def ping(self) -> None:
        """Raise when the dependency is unreachable."""
        ...


class CacheUnavailable(RuntimeError):
    """The shared cache did not answer; the caller reads from the database instead."""


@runtime_checkable
class SharedCache(Protocol):
    """L2: the cache every API process shares (Redis); any failure raises CacheUnavailable.

    Keys that one publication changes exactly (a snap's latest value) are deleted by key.
    Keys a publication may change without knowing which (history pages, quality over a
    window) live in a *scope*, one per series: a key is stored under the scope's current
    generation, and invalidating the scope starts a new generation, orphaning the rest.
    """

    async def get(self, key: str) -> bytes | None:
        """The cached bytes, or None when the key is absent."""
        ...

    async def get_scoped(self, scope: str, key: str) -> tuple[str, bytes | None]:
        """The scope's current generation and the bytes of `key` in it (None if absent)."""
        ...

    async def put(self, key: str, value: bytes, ttl_seconds: int, generation: str = "") -> None:
        """Store with a TTL; a scoped key is stored in the generation `get_scoped` returned."""
        ...

    async def invalidate(self, keys: Sequence[str], scopes: Sequence[str]) -> None:
        """Delete `keys` and start a new generation of each scope."""
        ...


# --- Reconciliation pipeline: the database seen from one transaction, and the event bus.

SnapKey: TypeAlias = tuple[str, datetime]
"""(reference_data_id, snap): what one reconciliation is about."""

# `failed`: closing the snap's window failed and it was set aside (not retried until new
# observations for it arrive).
SnapStateName = Literal["open", "published", "insufficient", "failed"]


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A state change to audit; the journal stamps its time and chains it.

    `entity_id` starts with the series id when the entity belongs to a series
    (`ETH-USD`, `ETH-USD/2026-01-15T14:00:00Z/v2`): its audit event is keyed by it.
    """

    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class OutboxMessage(msgspec.Struct, frozen=True, kw_only=True):
    """An event to publish once its transaction commits; `event_id` is stable."""

    event_id: str
    topic: str
    key: str
    payload: bytes
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class PendingMessage(OutboxMessage, frozen=True, kw_only=True):
    """A committed outbox row not published yet; `id` is its position in the outbox."""

    id: int


class SnapState(msgspec.Struct, frozen=True, kw_only=True):
    """Where one (series, snap) stands: waiting for its window, published, or insufficient."""

    reference_data_id: str
    snap: datetime
    window_closes_at: datetime
    state: SnapStateName
    latest_version: int | None


@runtime_checkable
class PipelineStore(Protocol):
    """Reconciliation, configuration and relay state, inside one database transaction.

    Writers of one series hold its lock (`lock_series`) before reading what they will
    change. The journal (`open_journal`, then `append_audit` and `enqueue`) comes last:
    it serialises the tail of every writing transaction, so the audit chain is linear and
    audit seqs and outbox positions follow commit order.
    """

    async def lock_series(self, reference_data_ids: Sequence[str]) -> None:
        """Hold each series' lock until the transaction ends."""
        ...

    async def clock(self) -> datetime:
        """The database's current time (one clock for every process)."""
        ...

    async def series(self, reference_data_ids: Sequence[str]) -> dict[str, Series]:
        """The configured series among the ids."""
        ...

    async def create_missing_series(
        self, reference_data_ids: Sequence[str], config: SeriesConfig
    ) -> list[Series]:
        """Create the series that do not exist yet with `config`; return those created."""
        ...

    async def save_series(
        self, reference_data_id: str, config: SeriesConfig, updated_at: datetime
    ) -> Series:
        """Create or replace one series' configuration."""
        ...

    async def observations(self, keys: Sequence[SnapKey]) -> dict[SnapKey, list[Observation]]:
        """Every stored observation of each (series, snap)."""
        ...

    async def latest_versions(self, keys: Sequence[SnapKey]) -> dict[SnapKey, OfficialValue]:
        """The highest version of each (series, snap) that has one."""
        ...

    async def previous_values(
        self, keys: Sequence[SnapKey]
    ) -> dict[SnapKey, tuple[datetime, float]]:
        """For each key, the latest official value of the series' closest earlier snap."""
        ...

    async def snap_states(self, keys: Sequence[SnapKey]) -> dict[SnapKey, SnapState]:
        """The recorded state of each (series, snap) seen before."""
        ...

    async def save_snap_states(self, states: Sequence[SnapState]) -> None:
        """Create or update the state of each (series, snap)."""
        ...

    async def due_snaps(self, limit: int) -> list[SnapKey]:
        """Open snaps whose collection window has ended, oldest deadline first."""
        ...

    async def open_journal(self) -> datetime:
        """Take the journal lock (held until commit); return the knowledge time to record."""
        ...

    async def insert_versions(
        self, versions: Sequence[tuple[OfficialValue, tuple[str, ...]]]
    ) -> None:
        """Insert new immutable versions, each with the observation ids it was computed from."""
        ...

    async def append_audit(self, entries: Sequence[AuditEntry], at: datetime) -> list[AuditRecord]:
        """Chain and append audit records after the latest one (journal must be open)."""
        ...

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        """Queue events for the relay, in order (journal must be open)."""
        ...

    async def unpublished(self, limit: int) -> list[PendingMessage]:
        """The oldest committed events not yet published, in outbox order."""
        ...

    async def mark_published(self, ids: Sequence[int]) -> list[int]:
        """Mark events published; return the ids this call marked (not marked before)."""
        ...

    async def set_aside(self, reasons: Mapping[int, str]) -> None:
        """Set unpublished events aside (id -> why the bus refused it); never relayed."""
        ...

    async def audit_after(self, seq: int, limit: int) -> list[AuditRecord]:
        """Committed audit records with a seq above `seq`, in seq (= commit) order."""
        ...

    async def relay_position(self, name: str) -> int:
        """Where the relay `name` stopped in its log (0 before the first record)."""
        ...

    async def save_relay_position(self, name: str, position: int) -> None:
        """Record that the relay `name` has published everything up to `position`."""
        ...


@runtime_checkable
class PipelineDatabase(Protocol):
    """Opens transactions on the writer database."""

    def transaction(self) -> AbstractAsyncContextManager[PipelineStore]:
        """A `PipelineStore` bound to a new transaction, committed when the block exits."""
        ...


@runtime_checkable
class ReferenceDataReader(Protocol):
    """Read side of series configurations (the reader endpoint)."""

    async def series(self, reference_data_id: str) -> Series | None:
        """One series, or None when it is unknown."""
        ...

    async def list_series(self, after: str | None, limit: int) -> list[Series]:
        """Series ordered by id, starting after `after`."""
        ...


class EventBusUnavailable(RuntimeError):
    """The event bus did not acknowledge every event; none may be marked published."""


class EventRefused(ValueError):
    """The event bus refused an event for what it is (too large, invalid): sending it
    again would be refused again. Earlier events of the batch may have been sent."""


@runtime_checkable
class EventPublisher(Protocol):
    """The event bus the outbox relay publishes to (Kafka in production)."""

    async def publish(self, messages: Sequence[PendingMessage]) -> list[tuple[int, int]]:
        """Send in order; return each event's (partition, offset) once all are acknowledged."""
        ...


@runtime_checkable
class QueryStore(Protocol):
    """What the query service reads (PostgreSQL reader endpoint)."""

    async def latest(
        self, series: str, snap: datetime, *, primary: bool = False
    ) -> OfficialValue | None:
        """The highest version; `primary` reads the writer (a reader may lag it)."""
        ...

    async def version(self, series: str, snap: datetime, version: int) -> OfficialValue | None:
        """That version, if it exists."""
        ...

    async def as_of(self, series: str, snap: datetime, as_of: datetime) -> OfficialValue | None:
        """The highest version recorded at or before `as_of`."""
        ...

    async def versions(self, series: str, snap: datetime) -> list[OfficialValue]:
        """Every version, oldest first."""
        ...

    async def history(
        self,
        series: str,
        start: datetime,
        end: datetime,
        granularity: Granularity,
        as_of: datetime | None,
        limit: int,
    ) -> list[HistoryItem]:
        """Up to `limit` points (latest or as-of versions) with `start <= snap < end`."""
        ...

    async def observations(
        self, series: str, snap: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Observation]:
        """Observations of a snap by receipt, after `(received_at, observation_id)`."""
        ...

    async def quality(self, series: str, start: datetime, end: datetime) -> QualitySummary:
        """Quality of the latest versions with `start <= snap < end`."""
        ...
