"""Retention in PostgreSQL: drop the day partitions older than the retention once the lake
holds every hour of them, verified (docs/lake.md, "Retention").

Per dataset (observations, audit) the days are taken oldest first and the first day that
cannot go stops the dataset: `lake_horizon.retained_from` says "everything before this
has left the database", so no day may be dropped past one that stays. A day goes when
each of its 24 hours either holds no row of the partition (the archive skips hours
without rows: nothing of it to lose) or has a `lake_hours` row whose `verified_at` is not
older than its `archived_at` (the newest generation was compared with the database after
it was written). With a verifier (the archive's `verify(hour)`), every hour is verified again
just before its day is dropped, so a row stored since the last verification is caught.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import msgspec

from app.domain.lake import AUDIT, OBSERVATIONS
from app.domain.retention import DayPartition, Dropped, LockBusy, RetentionRefused

_log = logging.getLogger("qis.retention")

DATASETS = (OBSERVATIONS, AUDIT)
Verifier = Callable[[datetime], Awaitable[object]]


class RetentionStore(Protocol):
    """The database side (app/adapters/postgres/partitions.py, `PostgresRetentionStore`)."""

    async def partitions(self, dataset: str) -> list[DayPartition]: ...
    async def unverified_hours(self, partition: DayPartition) -> list[datetime]: ...
    async def default_rows_before(self, dataset: str, before: datetime) -> int: ...
    async def drop(self, partition: DayPartition, lock_timeout_seconds: float) -> Dropped: ...


@dataclass(frozen=True)
class RetentionPolicy:
    days: int
    lock_timeout_seconds: float = 2.0
    lock_attempts: int = 3


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str
    partition: str
    # dropped | would-drop | refused | busy | kept-default
    action: str
    rows: int | None = None
    reason: str | None = None
    checkpoint_seq: int | None = None


def cutoff(now: datetime, days: int) -> datetime:
    """The start of the oldest UTC day kept: days ending at or before it may go."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


async def apply_retention(
    store: RetentionStore,
    policy: RetentionPolicy,
    now: datetime,
    *,
    verify: Verifier | None = None,
    dry_run: bool = False,
    on_decision: Callable[[Decision], None] = lambda _: None,
) -> list[Decision]:
    """Drop (or with `dry_run`, list) the day partitions past the retention; one decision
    per partition looked at, and per dataset whose default partition keeps old rows."""
    if policy.days <= 0:
        return []
    limit = cutoff(now, policy.days)
    decisions: list[Decision] = []
    verified: set[datetime] = set()

    def decide(decision: Decision) -> None:
        decisions.append(decision)
        on_decision(decision)
        _log.info("retention", extra=msgspec.structs.asdict(decision))

    for dataset in DATASETS:
        for partition in await store.partitions(dataset):
            if partition.end > limit:
                break
            if verify is not None and not dry_run:
                for hour in partition.hours():
                    if hour not in verified:
                        await verify(hour)
                        verified.add(hour)
            missing = await store.unverified_hours(partition)
            if missing:
                decide(
                    Decision(
                        dataset=dataset,
                        partition=partition.table,
                        action="refused",
                        reason=f"{len(missing)} hour(s) not verified in the lake, first"
                        f" {missing[0].isoformat()}",
                    )
                )
                break
            if dry_run:
                decide(Decision(dataset=dataset, partition=partition.table, action="would-drop"))
                continue
            decision = await _drop(store, policy, partition)
            decide(decision)
            if decision.action != "dropped":
                break
        kept = await store.default_rows_before(dataset, limit)
        if kept:
            decide(
                Decision(
                    dataset=dataset,
                    partition="default",
                    action="kept-default",
                    rows=kept,
                    reason="rows of days without a partition stay in the default partition",
                )
            )
    return decisions


async def _drop(
    store: RetentionStore, policy: RetentionPolicy, partition: DayPartition
) -> Decision:
    for attempt in range(1, max(policy.lock_attempts, 1) + 1):
        try:
            dropped = await store.drop(partition, policy.lock_timeout_seconds)
        except LockBusy:
            if attempt < policy.lock_attempts:
                await asyncio.sleep(min(0.5 * 2**attempt, 10.0))
            continue
        except RetentionRefused as exc:
            return Decision(
                dataset=partition.dataset,
                partition=partition.table,
                action="refused",
                reason=str(exc),
            )
        return Decision(
            dataset=partition.dataset,
            partition=partition.table,
            action="dropped",
            rows=dropped.rows,
            checkpoint_seq=dropped.checkpoint_seq,
        )
    return Decision(
        dataset=partition.dataset,
        partition=partition.table,
        action="busy",
        reason=f"no lock within {policy.lock_timeout_seconds} s, {policy.lock_attempts} tries",
    )
