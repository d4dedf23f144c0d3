"""The `audit_log` table: a linear hash chain, appended under the journal lock.

A transaction appends audit records only after taking the journal lock
(`pg_advisory_xact_lock(JOURNAL_LOCK_KEY)`, released when it commits or rolls back). Under
the lock it reads the latest hash, chains its records after it and inserts them, so no
two transactions ever chain onto the same record, and `seq` order (assigned under the
lock) is the chain's order. PostgreSQL makes a transaction visible before it releases
its locks, so the next holder always sees the previous holder's records.

`before`/`after` are `json` (exact text, see migration 0002): reading them back gives the
values that were hashed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from app.domain.audit import GENESIS_HASH, AuditRecord, audit_record

if TYPE_CHECKING:
    import asyncpg

    from app.adapters.postgres import Connection
    from app.ports import AuditEntry

JOURNAL_LOCK_KEY = 0x5149535F4A524E  # "QIS_JRN"

_encode = msgspec.json.Encoder()
_payload = msgspec.json.Decoder(dict[str, Any] | None)
_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class AuditOrderError(RuntimeError):
    """The database assigned seq numbers out of chain order (the batch is rolled back)."""


# Waiting for the journal is normal under load (every writer's tail queues there); giving
# up after the pool's statement timeout would only throw the batch's work away.
JOURNAL_WAIT_SECONDS = 60.0


async def lock_journal(conn: Connection) -> datetime:
    """Take the journal lock until the transaction ends; return the database clock after it."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1)", JOURNAL_LOCK_KEY, timeout=JOURNAL_WAIT_SECONDS
    )
    now: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return now


async def latest_hash(conn: Connection, near: datetime | None = None) -> str:
    """Hash of the last record, or the genesis hash for an empty trail. Hold the journal
    lock.

    `near` (the journal's clock, which stamped the records' `at`): the database function
    `qis_audit_head` (migration 0009) looks in that day's partition first, a one-table
    query, about 0.22 ms whatever the partition count; a query over the partitioned
    table probes every day partition (0.3 ms with 41 of them, 0.7 ms with 101, more on a
    busy machine; benchmarks/results/partitions.md), under the lock that serialises
    every writer's tail.
    """
    if near is None:
        value = await conn.fetchval("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    else:
        value = await conn.fetchval("SELECT qis_audit_head($1)", near)
    return GENESIS_HASH if value is None else str(value)


async def append_records(
    conn: Connection, entries: Sequence[AuditEntry], at: datetime
) -> list[AuditRecord]:
    """Chain the entries after the latest record and insert them. Hold the journal lock."""
    if not entries:
        return []
    prev = await latest_hash(conn, at)
    records: list[AuditRecord] = []
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
        records.append(record)
        prev = record.hash
    # One JSON document (see observations.py); `json` columns keep `before`/`after` as
    # the exact text msgspec wrote, which decodes to what was hashed.
    rows = await conn.fetch(
        """INSERT INTO audit_log
               (actor, action, entity_type, entity_id, before, after, at, prev_hash, hash)
           SELECT r.actor, r.action, r.entity_type, r.entity_id, r.before, r.after, r.at,
                  r.prev_hash, r.hash
             FROM json_populate_recordset(NULL::audit_log, $1::json) WITH ORDINALITY AS r
            ORDER BY r.ordinality
           RETURNING seq, hash""",
        _encode.encode(records).decode(),
    )
    seqs = {row["hash"]: row["seq"] for row in rows}
    ordered = [seqs[r.hash] for r in records]
    if ordered != sorted(ordered):
        raise AuditOrderError(f"seq numbers {ordered} do not follow the chain")
    return [msgspec.structs.replace(r, seq=seqs[r.hash]) for r in records]


def _record(row: asyncpg.Record) -> AuditRecord:
    return AuditRecord(
        seq=row["seq"],
        actor=row["actor"],
        action=row["action"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        before=None if row["before"] is None else _payload.decode(row["before"]),
        after=None if row["after"] is None else _payload.decode(row["after"]),
        at=row["at"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


async def stream_records(
    conn: Connection, *, table: str = "audit_log", batch: int = 2000, after_seq: int = 0
) -> AsyncIterator[AuditRecord]:
    """Every record with a seq above `after_seq` in seq order, from one consistent
    snapshot, read in batches.

    `table` lets a verifier read a copy (e.g. a restored backup or a scratch table); it
    must be a plain lower-case identifier. `after_seq`: the last record dropped by
    retention (its checkpoint, `audit_checkpoints`), where the retained chain starts.
    """
    if not _TABLE.match(table):
        raise ValueError(f"not a table name: {table!r}")
    query = f"""SELECT seq, actor, action, entity_type, entity_id, before::text AS before,
                       after::text AS after, at, prev_hash, hash
                  FROM {table} WHERE seq > $1 ORDER BY seq"""
    if conn.is_in_transaction():  # the caller's snapshot, e.g. a scratch table of its own
        async for row in conn.cursor(query, after_seq, prefetch=batch):
            yield _record(row)
        return
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor(query, after_seq, prefetch=batch):
            yield _record(row)


async def records_for(conn: Connection, entity_type: str, entity_id: str) -> list[AuditRecord]:
    """One entity's records in seq order."""
    rows = await conn.fetch(
        """SELECT seq, actor, action, entity_type, entity_id, before::text AS before,
                  after::text AS after, at, prev_hash, hash
             FROM audit_log WHERE entity_type = $1 AND entity_id = $2 ORDER BY seq""",
        entity_type,
        entity_id,
    )
    return [_record(row) for row in rows]


async def records_after(conn: Connection, seq: int, limit: int) -> list[AuditRecord]:
    """Records with a seq above `seq`, in seq order (a relay following the trail).

    Safe as a cursor: seqs are handed out under the journal lock, so once a record is
    visible every smaller seq is committed or rolled back, never still to come.
    """
    rows = await conn.fetch(
        """SELECT seq, actor, action, entity_type, entity_id, before::text AS before,
                  after::text AS after, at, prev_hash, hash
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2""",
        seq,
        limit,
    )
    return [_record(row) for row in rows]
