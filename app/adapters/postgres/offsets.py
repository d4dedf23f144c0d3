"""Consumer positions stored beside the effects they produced, fenced by owner and epoch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from app.ports import PartitionFenced

if TYPE_CHECKING:
    from app.adapters.postgres import Connection

__all__ = ["PartitionFenced", "advance", "claim_partitions", "lock_partitions"]


async def claim_partitions(
    conn: Connection, group_id: str, topic: str, partitions: Iterable[int], owner: str
) -> dict[int, tuple[int, int]]:
    """Take ownership (bumping the epoch); return partition -> (next_offset, epoch).

    The row lock makes this wait for a previous owner's batch still committing, so the
    position read here already includes that batch.
    """
    claimed: dict[int, tuple[int, int]] = {}
    async with conn.transaction():
        for partition in sorted(partitions):
            row = await conn.fetchrow(
                """INSERT INTO consumer_offsets (group_id, topic, partition, owner, epoch)
                   VALUES ($1, $2, $3, $4, 1)
                   ON CONFLICT (group_id, topic, partition) DO UPDATE
                       SET owner = EXCLUDED.owner,
                           epoch = consumer_offsets.epoch + 1,
                           updated_at = now()
                   RETURNING next_offset, epoch""",
                group_id,
                topic,
                partition,
                owner,
            )
            assert row is not None
            claimed[partition] = (row["next_offset"], row["epoch"])
    return claimed


async def advance(
    conn: Connection,
    group_id: str,
    topic: str,
    positions: Mapping[int, tuple[int, int]],
    owner: str,
) -> None:
    """Inside the batch transaction: move each partition to its next offset, or raise if fenced.

    `positions` maps partition -> (next_offset, epoch). Rows are locked in partition order
    so two consumers never deadlock.
    """
    for partition in sorted(positions):
        next_offset, epoch = positions[partition]
        updated = await conn.fetchval(
            """UPDATE consumer_offsets SET next_offset = $4, updated_at = now()
                WHERE group_id = $1 AND topic = $2 AND partition = $3
                  AND owner = $5 AND epoch = $6
            RETURNING partition""",
            group_id,
            topic,
            partition,
            next_offset,
            owner,
            epoch,
        )
        if updated is None:
            raise PartitionFenced(f"{topic}[{partition}] was claimed by another consumer")


async def lock_partitions(
    conn: Connection, group_id: str, topic: str, partitions: Iterable[int]
) -> None:
    """Take the partitions' row locks first, so one partition is processed by one transaction."""
    await conn.execute(
        """SELECT 1 FROM consumer_offsets
            WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])
            ORDER BY partition FOR UPDATE""",
        group_id,
        topic,
        sorted(partitions),
    )
