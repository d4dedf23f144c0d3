"""Reading back: the shapes of history, version lists, lineage and quality summaries.

Bitemporal rules (docs/domain.md): latest is the highest version; `as_of=T` is the highest
version with `recorded_at <= T`; a history reads, per snap, the version that rule picks.
With a granularity other than `raw`, each bucket (UTC-aligned minute, hour or day) holds
the last snap's official value and `count`, the number of snaps with a value in it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec

from app.domain.observation import Observation
from app.domain.versions import OfficialValue

Granularity = Literal["raw", "1m", "1h", "1d"]
GRANULARITY_STEP: dict[Granularity, timedelta | None] = {
    "raw": None,
    "1m": timedelta(minutes=1),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
MAX_PAGE = 1000


class HistoryItem(OfficialValue, frozen=True, kw_only=True):
    """One point of a history: an official value, plus its bucket's start and snap count.

    For `raw`, `bucket` is the snap itself and `count` is 1.
    """

    bucket: datetime
    count: int


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    """Points in snap order; `next_cursor` is null on the last page."""

    items: list[HistoryItem]
    next_cursor: str | None


class VersionList(msgspec.Struct, frozen=True, kw_only=True):
    """Every version of one (series, snap), oldest first."""

    items: list[OfficialValue]


class LineagePage(msgspec.Struct, frozen=True, kw_only=True):
    """The raw observations behind a snap, in order of receipt."""

    items: list[Observation]
    next_cursor: str | None


class QualityAverages(msgspec.Struct, frozen=True, kw_only=True):
    """Average of each quality dimension."""

    completeness: float
    timeliness: float
    consistency: float
    validity: float


class QualitySummary(msgspec.Struct, frozen=True, kw_only=True):
    """Quality of the latest versions whose snap is in `[from, to)`; nulls when `count` is 0."""

    reference_data_id: str
    from_: datetime = msgspec.field(name="from")
    to: datetime
    count: int
    average_score: float | None
    minimum_score: float | None
    suspect_count: int
    average_dimensions: QualityAverages | None
