"""Reading the lake: which hours a query touches, and where a read splits between the lake
and the database. Pure: the lake reader and the tiered query store use these.

A read of the lake finds its objects only through the manifests of the hours it touches
(`Manifest.objects`), never by the key layout, so the archive may bundle series.

Retention (`lake_horizon`) drops a dataset's rows before `retained_from` from the
database; a read of an older range is answered from the lake, the rest from the database.
A bucketed history splits at the start of the bucket holding the horizon: that bucket has
rows on both sides, so its two halves are merged (`merge_bucket`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from app.domain.lake import HOUR, hour_of
from app.domain.reading import HistoryItem

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """The hours that hold a time in `[start, end)`, oldest first (none when empty)."""
    hours: list[datetime] = []
    if start >= end:
        return hours
    hour = hour_of(start)
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return hours


def bucket_start(t: datetime, step: timedelta | None) -> datetime:
    """The UTC-aligned bucket of `step` holding `t` (`t` itself for `raw`, step None)."""
    if step is None:
        return t
    return t - (t - _EPOCH) % step


def merge_bucket(older: HistoryItem | None, newer: HistoryItem | None) -> HistoryItem | None:
    """One bucket from its part before the horizon (lake) and after it (database): the
    last snap's value, and the snaps of both parts counted."""
    if older is None or newer is None:
        return newer or older
    return msgspec.structs.replace(newer, count=older.count + newer.count)
