"""The `relay_positions` table: how far a relay that follows an ordered log has published."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.adapters.postgres import Connection


async def read_position(conn: Connection, name: str) -> int:
    """The last published position of relay `name`; 0 when it never ran."""
    value = await conn.fetchval("SELECT position FROM relay_positions WHERE name = $1", name)
    return 0 if value is None else int(value)


async def save_position(conn: Connection, name: str, position: int) -> None:
    """Move relay `name` to `position` (never backwards)."""
    await conn.execute(
        """INSERT INTO relay_positions (name, position) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE
               SET position = greatest(relay_positions.position, EXCLUDED.position),
                   updated_at = now()""",
        name,
        position,
    )


async def open_position(conn: Connection, name: str) -> int:
    """Relay `name`'s position; a relay without one starts after the newest committed
    outbox row (rows still in flight have larger ids: the outbox hands ids out in commit
    order), and that start is saved."""
    await conn.execute(
        """INSERT INTO relay_positions (name, position)
           SELECT $1, coalesce(max(id), 0) FROM outbox
           ON CONFLICT (name) DO NOTHING""",
        name,
    )
    return await read_position(conn, name)
