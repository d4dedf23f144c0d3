"""The transactional `outbox`: events written with the state they announce, relayed later.

Ordering, and why the relay can read by id: rows are only inserted under the journal
lock (`audit.lock_journal`), which is held until commit. So the id sequence is handed out
in commit order: when a row is visible, every row with a smaller id belongs to a
transaction that has already committed (or rolled back). A transaction that commits
late cannot own a smaller id than a row already seen, so the relay, reading unpublished
rows in id order, never skips one and publishes in commit order (in particular in order
per series).

The alternative the `txid` column allows, a snapshot filter
(`txid < pg_snapshot_xmin(pg_current_snapshot())`), was not enough on its own here:
ids and xids are handed out in different orders (a worker's xid is assigned at its
first write, before it waits for a series lock), so a safe row can have a larger id
than an unsafe row of the same series, and ordering by id within the safe set would
publish version 2 before version 1. The lock makes the order hold by construction, and
the audit chain needs that same lock anyway.

`enqueue` is private to the journal: call it only while holding the journal lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from app.ports import PendingMessage

if TYPE_CHECKING:
    from asyncpg import Record

    from app.adapters.postgres import Connection
    from app.ports import OutboxMessage

NOTIFY_CHANNEL = "qis_outbox"

_headers_json = msgspec.json.Encoder()
_headers = msgspec.json.Decoder(dict[str, str])


async def enqueue(conn: Connection, messages: Sequence[OutboxMessage]) -> None:
    """Insert events in the given order; an event id already queued is left as it is."""
    if not messages:
        return
    await conn.execute(
        """INSERT INTO outbox (event_id, topic, key, payload, headers)
           SELECT r.event_id, r.topic, r.key, r.payload, r.headers::jsonb
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])
                  WITH ORDINALITY AS r(event_id, topic, key, payload, headers, n)
            ORDER BY r.n
           ON CONFLICT (event_id) DO NOTHING""",
        [m.event_id for m in messages],
        [m.topic for m in messages],
        [m.key for m in messages],
        [m.payload for m in messages],
        [_headers_json.encode(m.headers).decode() for m in messages],
    )


async def fetch_unpublished(conn: Connection, limit: int) -> list[PendingMessage]:
    """The oldest unpublished committed events, in id (= commit) order."""
    rows = await conn.fetch(
        """SELECT id, event_id, topic, key, payload, headers::text AS headers
             FROM outbox WHERE published_at IS NULL AND set_aside_at IS NULL
            ORDER BY id LIMIT $1""",
        limit,
    )
    return [_pending(row) for row in rows]


async def fetch_after(
    conn: Connection, position: int, topics: Sequence[str], limit: int
) -> list[PendingMessage]:
    """Committed events of `topics` above the id `position`, in id (= commit) order,
    whether the relay has published them or not (a sink relay's read)."""
    rows = await conn.fetch(
        """SELECT id, event_id, topic, key, payload, headers::text AS headers
             FROM outbox WHERE id > $1 AND topic = ANY($2::text[])
            ORDER BY id LIMIT $3""",
        position,
        list(topics),
        limit,
    )
    return [_pending(row) for row in rows]


def _pending(row: Record) -> PendingMessage:
    return PendingMessage(
        id=row["id"],
        event_id=row["event_id"],
        topic=row["topic"],
        key=row["key"],
        payload=bytes(row["payload"]),
        headers=_headers.decode(row["headers"]),
    )


async def mark_published(conn: Connection, ids: Sequence[int]) -> list[int]:
    """Mark rows published; return those this call marked (a row marked before is skipped)."""
    if not ids:
        return []
    rows = await conn.fetch(
        """UPDATE outbox SET published_at = clock_timestamp()
            WHERE id = ANY($1::bigint[]) AND published_at IS NULL
        RETURNING id""",
        list(ids),
    )
    return sorted(row["id"] for row in rows)


async def set_aside(conn: Connection, reasons: Mapping[int, str]) -> None:
    """Set rows aside with the reason the broker refused them; the relay skips them."""
    if not reasons:
        return
    await conn.execute(
        """UPDATE outbox SET set_aside_at = clock_timestamp(), set_aside_reason = r.reason
             FROM unnest($1::bigint[], $2::text[]) AS r(id, reason)
            WHERE outbox.id = r.id AND published_at IS NULL""",
        list(reasons),
        list(reasons.values()),
    )


async def purge_published(
    conn: Connection,
    older_than_seconds: float,
    batch: int = 5000,
    sinks: Sequence[str] = (),
) -> int:
    """Delete rows published more than `older_than_seconds` ago; return how many.

    Looks only at the `batch` oldest ids (publication follows id order), so each call is
    a bounded index range, never a scan of the whole table. Rows above the position of
    any relay named in `sinks` (the enabled sink relays) are kept, and so is every row
    while one of them has no position yet.
    """
    result: str = await conn.execute(
        """DELETE FROM outbox WHERE id IN (
               SELECT id FROM (SELECT id, published_at FROM outbox
                                WHERE set_aside_at IS NULL ORDER BY id LIMIT $2) AS o
                WHERE o.published_at < clock_timestamp() - make_interval(secs => $1)
                  AND o.id <= coalesce(
                        (SELECT CASE WHEN count(*) = cardinality($3::text[])
                                     THEN min(position) ELSE 0 END
                           FROM relay_positions WHERE name = ANY($3::text[])),
                        9223372036854775807))""",
        older_than_seconds,
        batch,
        list(sinks),
    )
    return int(result.split()[-1])
