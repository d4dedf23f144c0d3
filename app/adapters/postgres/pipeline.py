"""PostgreSQL implementations of the pipeline ports, composed from the table modules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from app.adapters.postgres import (
    audit,
    official_values,
    offsets,
    outbox,
    reference_data,
    relay_positions,
    snaps,
)
from app.adapters.postgres.observations import insert_observations, observations_for_snaps

if TYPE_CHECKING:
    import asyncpg

    from app.adapters.postgres import Connection
    from app.domain.audit import AuditRecord
    from app.domain.observation import Observation
    from app.domain.series import Series, SeriesConfig
    from app.domain.versions import OfficialValue
    from app.ports import AuditEntry, OutboxMessage, PendingMessage, SnapKey, SnapState


class JournalNotOpen(RuntimeError):
    """Audit records or outbox rows written without the journal lock (a programming error)."""


class PostgresPipelineStore:
    """`PipelineStore` on one connection; the caller owns the transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._journal_open = False

    async def lock_series(self, reference_data_ids: Sequence[str]) -> None:
        await reference_data.lock_series(self._conn, reference_data_ids)

    async def clock(self) -> datetime:
        now: datetime = await self._conn.fetchval("SELECT clock_timestamp()")
        return now

    async def series(self, reference_data_ids: Sequence[str]) -> dict[str, Series]:
        return await reference_data.get_many(self._conn, reference_data_ids)

    async def create_missing_series(
        self, reference_data_ids: Sequence[str], config: SeriesConfig
    ) -> list[Series]:
        return await reference_data.create_missing(self._conn, reference_data_ids, config)

    async def save_series(
        self, reference_data_id: str, config: SeriesConfig, updated_at: datetime
    ) -> Series:
        return await reference_data.save_series(self._conn, reference_data_id, config, updated_at)

    async def observations(self, keys: Sequence[SnapKey]) -> dict[SnapKey, list[Observation]]:
        grouped: dict[SnapKey, list[Observation]] = {}
        for observation in await observations_for_snaps(self._conn, keys):
            key = (observation.reference_data_id, observation.snap)
            grouped.setdefault(key, []).append(observation)
        return grouped

    async def latest_versions(self, keys: Sequence[SnapKey]) -> dict[SnapKey, OfficialValue]:
        return await official_values.latest_versions(self._conn, keys)

    async def previous_values(
        self, keys: Sequence[SnapKey]
    ) -> dict[SnapKey, tuple[datetime, float]]:
        return await official_values.previous_values(self._conn, keys)

    async def snap_states(self, keys: Sequence[SnapKey]) -> dict[SnapKey, SnapState]:
        return await snaps.snap_states(self._conn, keys)

    async def save_snap_states(self, states: Sequence[SnapState]) -> None:
        await snaps.save_snap_states(self._conn, states)

    async def due_snaps(self, limit: int) -> list[SnapKey]:
        return await snaps.due_snaps(self._conn, limit)

    async def open_journal(self) -> datetime:
        now = await audit.lock_journal(self._conn)
        self._journal_open = True
        return now

    async def insert_versions(self, versions: Sequence[OfficialValue]) -> None:
        await official_values.insert_versions(self._conn, versions)

    async def append_audit(self, entries: Sequence[AuditEntry], at: datetime) -> list[AuditRecord]:
        self._require_journal()
        return await audit.append_records(self._conn, entries, at)

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        self._require_journal()
        await outbox.enqueue(self._conn, messages)

    async def unpublished(self, limit: int) -> list[PendingMessage]:
        return await outbox.fetch_unpublished(self._conn, limit)

    async def mark_published(self, ids: Sequence[int]) -> list[int]:
        return await outbox.mark_published(self._conn, ids)

    async def outbox_after(
        self, position: int, topics: Sequence[str], limit: int
    ) -> list[PendingMessage]:
        return await outbox.fetch_after(self._conn, position, topics, limit)

    async def set_aside(self, reasons: Mapping[int, str]) -> None:
        await outbox.set_aside(self._conn, reasons)

    async def audit_after(self, seq: int, limit: int) -> list[AuditRecord]:
        return await audit.records_after(self._conn, seq, limit)

    async def relay_position(self, name: str) -> int:
        return await relay_positions.read_position(self._conn, name)

    async def open_relay_position(self, name: str) -> int:
        return await relay_positions.open_position(self._conn, name)

    async def save_relay_position(self, name: str, position: int) -> None:
        await relay_positions.save_position(self._conn, name, position)

    def _require_journal(self) -> None:
        if not self._journal_open:
            raise JournalNotOpen("open_journal() must come before audit records and events")


class PostgresDatabase:
    """`PipelineDatabase` on the writer pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresPipelineStore]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresPipelineStore(conn)


class PostgresReadModel:
    """`ReferenceDataReader` on the reader pool (the Aurora reader endpoint)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def series(self, reference_data_id: str) -> Series | None:
        async with self._pool.acquire() as conn:
            return await reference_data.get_series(conn, reference_data_id)

    async def list_series(self, after: str | None, limit: int) -> list[Series]:
        async with self._pool.acquire() as conn:
            return await reference_data.list_series(conn, after, limit)


class PostgresBatch:
    """`BatchTransaction` on one connection inside its transaction."""

    def __init__(self, conn: Connection, group_id: str, topic: str) -> None:
        self._conn = conn
        self._group = group_id
        self._topic = topic
        self.pipeline = PostgresPipelineStore(conn)

    async def lock_partitions(self, partitions: Sequence[int]) -> None:
        await offsets.lock_partitions(self._conn, self._group, self._topic, partitions)

    async def insert_observations(self, observations: Sequence[Observation]) -> list[str]:
        return await insert_observations(self._conn, observations)

    async def advance(self, positions: Mapping[int, tuple[int, int]], owner: str) -> None:
        await offsets.advance(self._conn, self._group, self._topic, positions, owner)


class PostgresBatchStore:
    """`BatchStore`: observations and consumer positions of one group and topic."""

    def __init__(self, pool: asyncpg.Pool, group_id: str, topic: str) -> None:
        self._pool = pool
        self._group = group_id
        self._topic = topic

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresBatch]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresBatch(conn, self._group, self._topic)

    async def claim(self, partitions: Sequence[int], owner: str) -> dict[int, tuple[int, int]]:
        async with self._pool.acquire() as conn:
            return await offsets.claim_partitions(conn, self._group, self._topic, partitions, owner)
