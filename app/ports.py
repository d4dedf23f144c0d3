"""Ports: what the services need from the outside world, as Protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, TypeAlias, runtime_checkable

import msgspec

from app.domain.audit import AuditRecord
from app.domain.dead_letter import DeadLetter
from app.domain.descriptor import StoredDescriptor
from app.domain.events import DomainEvent
from app.domain.observation import Observation, ObservationsRecorded
from app.domain.reading import Granularity, HistoryItem, QualitySummary
from app.domain.reconciliation import Reconciliation
from app.domain.series import Series, SeriesConfig
from app.domain.snaps import SnapStateName as SnapStateName
from app.domain.versions import OfficialValue, VersionDecision


class IngestionLogUnavailable(RuntimeError):
    """The ingestion log did not acknowledge in time; nothing may be acknowledged to the client."""


# runtime_checkable: Litestar checks injected dependencies against their declared type.
@runtime_checkable
class IngestionLog(Protocol):
    """Durable log of accepted observations (Kafka in production)."""

    async def append(
        self, records: Sequence[ObservationsRecorded], actor: str | None = None
    ) -> None:
        """Return once every record is acknowledged; else raise IngestionLogUnavailable.

        `actor` (who submitted them) travels with each record to the worker's audit trail.
        """
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

# The snap states are domain rules (app/domain/snaps.py); stores keep them.


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

    async def insert_versions(self, versions: Sequence[OfficialValue]) -> None:
        """Insert new immutable versions (their lineage is in their audit records)."""
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

    async def outbox_after(
        self, position: int, topics: Sequence[str], limit: int
    ) -> list[PendingMessage]:
        """Committed events of `topics` with an outbox id above `position`, in id (=
        commit) order, published or not; what a sink relay follows."""
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

    async def open_relay_position(self, name: str) -> int:
        """Where the relay `name` stopped; a relay without a position starts after the
        newest committed outbox row (and that start is saved)."""
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


class DescriptorStoreUnavailable(RuntimeError):
    """The document store did not answer in time (unreachable, timed out): a 503."""


@runtime_checkable
class DescriptorStore(Protocol):
    """Series descriptor documents (Amazon DocumentDB; docs/descriptors.md), one per
    series, each with the revision that counts its changes. Writes are conditional on
    the revision the writer read, so two writers never both win."""

    async def get(self, reference_data_id: str) -> StoredDescriptor | None:
        """The series' descriptor, or None when it has none."""
        ...

    async def put(self, stored: StoredDescriptor, previous_revision: int) -> bool:
        """Store `stored` if the stored revision is still `previous_revision` (0: no
        descriptor yet); False, storing nothing, when it is not."""
        ...

    async def restore(self, previous: StoredDescriptor | None, revision: int, series: str) -> None:
        """Undo a `put` of `revision` of `series`'s descriptor: put `previous` back
        (None: delete it), unless the stored revision is no longer `revision`."""
        ...

    async def with_vendor_symbol(self, vendor: str, symbol: str) -> list[str]:
        """The series whose descriptor maps `vendor`'s `symbol` to them, ordered by id."""
        ...


# --- Consuming the ingestion log: records in, one transaction per (part of a) batch.


class LogRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One record of the ingestion log, as the consume service sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None


class PartitionFenced(RuntimeError):
    """Another consumer claimed the partition since we did: our batch must not commit."""


# partition -> (next offset, ownership epoch)
Positions: TypeAlias = Mapping[int, tuple[int, int]]


class BatchTransaction(Protocol):
    """One database transaction of the consume service: the batch's effects and the
    next positions of its partitions commit together (exactly-once effects)."""

    @property
    def pipeline(self) -> PipelineStore:
        """The reconciliation pipeline's store, in this same transaction."""
        ...

    async def lock_partitions(self, partitions: Sequence[int]) -> None:
        """Hold the partitions' position rows until the transaction ends."""
        ...

    async def insert_observations(self, observations: Sequence[Observation]) -> list[str]:
        """Store new observations; return the ids not stored before (idempotent)."""
        ...

    async def advance(self, positions: Positions, owner: str) -> None:
        """Move each partition to its next offset, or raise PartitionFenced."""
        ...


class BatchStore(Protocol):
    """Where the consume service keeps what it consumed: observations and positions."""

    def transaction(self) -> AbstractAsyncContextManager[BatchTransaction]:
        """A transaction that commits when the block ends without an exception."""
        ...

    async def claim(self, partitions: Sequence[int], owner: str) -> dict[int, tuple[int, int]]:
        """Take ownership of the partitions (bumping their epochs); return each
        partition's (next offset, epoch). Waits for a previous owner's batch to commit."""
        ...


class DeadLetterSink(Protocol):
    """The dead-letter topic: returns once every letter is acknowledged."""

    async def send(self, letters: Sequence[DeadLetter]) -> None: ...


class LogSource(Protocol):
    """The consumer side of the ingestion log (one consumer group member)."""

    async def poll(self, max_records: int, timeout_ms: int) -> dict[int, list[LogRecord]]:
        """Records by partition, each partition's in offset order (may be empty)."""
        ...

    def assigned(self) -> list[int]:
        """The partitions this member owns now."""
        ...

    def seek(self, partition: int, offset: int) -> None:
        """Read `partition` from `offset` on."""
        ...

    async def lag(self) -> int | None:
        """Records behind the end of the assigned partitions (None: unknown now)."""
        ...


class ConsumeTracing(Protocol):
    """What the consume service reports to tracing (app/telemetry implements it)."""

    def record_sampled(self, headers: Sequence[tuple[str, bytes]]) -> bool:
        """Whether a record's trace headers say its request was sampled."""
        ...

    def batch(self, records: Sequence[LogRecord]) -> AbstractContextManager[object]:
        """The span of processing one polled batch (joined to its sampled requests)."""
        ...


# --- Scheduling: one leader among the scheduler replicas.


class Leadership(Protocol):
    """Leadership held now. `lost` is set as soon as it may be gone (the leader stops its
    work); `wake` is set when new events or audit records committed (the relay runs)."""

    lost: asyncio.Event
    wake: asyncio.Event

    async def confirm(self, timeout_seconds: float) -> None:
        """Raise when leadership cannot be confirmed within the timeout."""
        ...


class LeaderElection(Protocol):
    """Campaigning for leadership; at most one holder at a time."""

    def campaign(self) -> AbstractAsyncContextManager[Leadership | None]:
        """Leadership while the block runs, or None when another replica leads."""
        ...


class OutboxRetention(Protocol):
    """Deleting published outbox rows once they are old enough."""

    async def purge_published(self, older_than_seconds: float) -> int:
        """Delete one bounded batch of such rows; return how many. Rows a sink relay
        has not passed yet (its position) are kept."""
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


class SinkEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An official-value or quality-alert event, as a downstream sink receives it.

    `position` is the event's place in the outbox (commit order); `key` is its series id;
    `payload` is the event's JSON as published on Kafka; `event` is that JSON decoded;
    `headers` is the trace context captured when the event was written (W3C
    `traceparent`, and `X-Amzn-Trace-Id` when the X-Ray propagator is on).
    """

    position: int
    event_id: str
    topic: str
    key: str
    payload: bytes
    event: DomainEvent
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class SinkUnavailable(RuntimeError):
    """The sink did not take every event of a batch (unreachable, throttled, or entries
    still failing after the adapter's retries). The sink relay keeps its position and
    hands the same events over again later; the sink must take a redelivery without
    harm (event ids are stable)."""


@runtime_checkable
class EventSink(Protocol):
    """A downstream copy of the published events (EventBridge, Timestream).

    Each sink is fed by its own sink relay in outbox order, one batch at a time, and the
    relay saves its position (named `name`) only after `deliver` returns. An event the
    sink refuses for what it is (too large, invalid for the service) must not block the
    sink: the adapter reports it (a log line, and a rejected-records location where the
    service has one), leaves it out, and counts it in what `deliver` returns.
    """

    name: str
    batch_size: int

    async def deliver(self, events: Sequence[SinkEvent]) -> int:
        """Take every event, in order, or raise `SinkUnavailable`; return how many events
        were refused for what they are (reported and left out)."""
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


class LakeHorizon(Protocol):
    """Where retention stands (`lake_horizon`): rows of a dataset older than this have
    left the database and are read from the lake."""

    async def retained_from(self, dataset: str) -> datetime | None:
        """The time before which the dataset's rows were dropped (None: nothing was)."""
        ...


# --- Beside the stores: the in-process cache, and instrumentation (what services report;
# implemented in app/adapters/memory_cache.py and app/telemetry/).


class LocalCache(Protocol):
    """L1: a bounded cache in this process (`MemoryCache`); never fails, may forget.

    An entry may carry a tag (a series id), so `discard_tag` drops all of them at once.
    """

    def get(self, key: str) -> bytes | None:
        """The live value, or None when absent or expired."""
        ...

    def put(self, key: str, value: bytes, ttl_seconds: float, tag: str | None = None) -> None:
        """Store for `ttl_seconds` (0: not at all)."""
        ...

    def discard(self, key: str) -> None:
        """Drop one entry if present."""
        ...

    def discard_tag(self, tag: str) -> int:
        """Drop every entry carrying `tag`; return how many."""
        ...

    def clear(self) -> None:
        """Drop everything."""
        ...


class Metrics(Protocol):
    """The instruments services record to (`app.telemetry.metrics.QisMetrics`; the
    metric each feeds is named there). `NULL_METRICS` in app/services/instrumentation.py
    records nothing."""

    def reconciliation(self, succeeded: bool) -> None:
        """One snap published (True), or left insufficient or failed (False)."""
        ...

    def quality_score(self, score: float, series: str) -> None:
        """The quality score of a version just published."""
        ...

    def dead_letters(self, count: int, stage: str) -> None:
        """Records (or rows) set aside at `stage`."""
        ...

    def publication_freshness(self, seconds: float) -> None:
        """Snap to the publication of its first version."""
        ...

    def cache_lookup(self, level: str, hit: bool) -> None:
        """One lookup at cache level `L1` or `L2`."""
        ...

    def cache_fallback(self) -> None:
        """A read that went to the database because L2 was unavailable."""
        ...

    def consumer_lag(self, topic: str, lag: int) -> None:
        """Records of `topic` not consumed yet."""
        ...


class ReconciliationStep(Protocol):
    """The span of one snap's reconciliation, while it runs."""

    def reconciled(
        self,
        config: SeriesConfig,
        observations: Sequence[Observation],
        result: Reconciliation,
    ) -> None:
        """Record what was reconciled and how (nothing when the span is not recorded)."""
        ...


class QualityStep(Protocol):
    """The span of one snap's quality assessment and publication decision, while it runs."""

    def assessed(
        self, config: SeriesConfig, result: Reconciliation, decision: VersionDecision
    ) -> None:
        """Record the quality and the decision (nothing when the span is not recorded)."""
        ...


class Tracing(Protocol):
    """The spans and trace context services take part in (`PipelineTracing` in
    app/telemetry/pipeline_tracing.py). `NULL_TRACING` in app/services/instrumentation.py
    traces nothing.

    `traced` False means "make no span" (the work is not sampled): the step costs nothing.
    """

    def recording(self) -> bool:
        """Whether the current work is recorded (children of an unrecorded span never are)."""
        ...

    def reconciliation(
        self, key: SnapKey, traced: bool
    ) -> AbstractContextManager[ReconciliationStep]:
        """A span around reconciling one snap's observations."""
        ...

    def quality_assessment(self, key: SnapKey, traced: bool) -> AbstractContextManager[QualityStep]:
        """A span around scoring one snap and deciding whether to publish a version."""
        ...

    def outbox_relay(self, messages: Sequence[OutboxMessage]) -> AbstractContextManager[None]:
        """The relay's span around publishing `messages`, linked to the trace each one
        was written in (its stored headers)."""
        ...

    def trace_headers(self) -> dict[str, str]:
        """The current trace context as text headers (empty when nothing is traced)."""
        ...


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who sent a request: the app client of its access token, the user where there is one
    (a user-pool sign-in), and the scopes the token grants."""

    client_id: str
    username: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def actor(self) -> str:
        """The audit trail's actor: `client_id`, or `client_id/username` for a user."""
        return self.client_id if self.username is None else f"{self.client_id}/{self.username}"


class Unauthenticated(Exception):
    """A bearer token that is missing, malformed, expired or not signed by the issuer.

    `reason` is for the log only; the client is told only that the token is not valid.
    """

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired


class VerifierUnavailable(RuntimeError):
    """The issuer's keys could not be fetched, so no token can be checked (a 503)."""


class TokenVerifier(Protocol):
    """Checks a bearer token (Cognito access token) and says who sent it."""

    async def verify(self, token: str) -> Principal:
        """The token's principal; else raise Unauthenticated (or VerifierUnavailable)."""
        ...


class RateLimiter(Protocol):
    """Token buckets per client and scope, shared by every api process where possible."""

    async def acquire(self, client_id: str, scope: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        ...
