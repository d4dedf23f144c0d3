"""Day partitions (migration 0009) and what retention can answer when asked to drop one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class DayPartition:
    dataset: str
    table: str  # the partition's name
    day: date

    @property
    def start(self) -> datetime:
        return day_start(self.day)

    @property
    def end(self) -> datetime:
        return day_start(self.day + timedelta(days=1))

    def hours(self) -> list[datetime]:
        return [self.start + timedelta(hours=h) for h in range(24)]


@dataclass(frozen=True)
class Dropped:
    partition: DayPartition
    rows: int  # counted just before the DETACH
    checkpoint_seq: int | None  # audit: the last dropped record


class RetentionRefused(Exception):
    """The partition cannot be dropped; nothing changed (the transaction rolled back)."""


class LockBusy(Exception):
    """The DETACH did not get its lock within the timeout; nothing changed."""
