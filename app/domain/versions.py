"""Versions of official values: when a reconciliation becomes version 1, N+1, or nothing.

Decisions beyond docs/domain.md:

- A result is *unchanged* when its value, status, used sources and excluded sources
  (with their reasons) equal the latest version's. Method and quality alone do not make
  a version; a quality change that crosses the threshold does, through the status.
- With no `expected_sources`, "every expected source has reported" is vacuously true,
  so version 1 is published as soon as `min_sources` sources are usable.
- An `insufficient` result after version 1 (e.g. a source corrected itself out of
  bounds) publishes nothing: versions are immutable and an official value cannot be
  withdrawn by a later one. The decision says `insufficient_after_publication` so the
  caller can audit that the latest version no longer matches the observations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import msgspec

from app.domain.quality import Quality, QualityStatus
from app.domain.reconciliation import Exclusion, Reconciliation
from app.domain.series import Method

DecisionReason = Literal[
    "first_version",  # publish version 1
    "revised",  # publish version N+1
    "window_open",  # not yet: expected sources missing and the window is still open
    "insufficient",  # not yet: fewer than min_sources usable, no version exists
    "insufficient_after_publication",  # nothing: versions cannot be withdrawn
    "unchanged",  # nothing: same value, status and sources as the latest version
]
Change = Literal["value", "status", "sources"]


class OfficialValue(msgspec.Struct, frozen=True, kw_only=True):
    """One immutable version of a series' official value at a snap (docs/api.md field names)."""

    reference_data_id: str
    snap: datetime
    version: int
    value: float
    status: QualityStatus
    method: Method
    sources_used: tuple[str, ...]
    sources_excluded: tuple[Exclusion, ...]
    quality: Quality
    supersedes: int | None
    recorded_at: datetime


class VersionDecision(msgspec.Struct, frozen=True, kw_only=True):
    """Whether to publish a new version, which one, and why (`changes` lists what moved)."""

    publish: bool
    reason: DecisionReason
    version: int | None = None
    supersedes: int | None = None
    changes: tuple[Change, ...] = ()


def decide_version(
    result: Reconciliation,
    latest: OfficialValue | None,
    *,
    all_expected_reported: bool,
    window_closed: bool,
) -> VersionDecision:
    """Apply the publication rules of docs/domain.md to a fresh reconciliation result."""
    if latest is None:
        if result.status == "insufficient":
            return VersionDecision(publish=False, reason="insufficient")
        if not (all_expected_reported or window_closed):
            return VersionDecision(publish=False, reason="window_open")
        return VersionDecision(publish=True, reason="first_version", version=1)
    if result.status == "insufficient":
        return VersionDecision(publish=False, reason="insufficient_after_publication")
    changes = changes_since(latest, result)
    if not changes:
        return VersionDecision(publish=False, reason="unchanged")
    return VersionDecision(
        publish=True,
        reason="revised",
        version=latest.version + 1,
        supersedes=latest.version,
        changes=changes,
    )


def changes_since(latest: OfficialValue, result: Reconciliation) -> tuple[Change, ...]:
    """What differs between the latest version and a new result, in a fixed order."""
    changes: list[Change] = []
    if result.value != latest.value:
        changes.append("value")
    if result.status != latest.status:
        changes.append("status")
    if (
        result.sources_used != latest.sources_used
        or result.sources_excluded != latest.sources_excluded
    ):
        changes.append("sources")
    return tuple(changes)


def official_value(
    reference_data_id: str,
    snap: datetime,
    result: Reconciliation,
    decision: VersionDecision,
    *,
    recorded_at: datetime,
) -> OfficialValue:
    """The version a publishing decision creates; `recorded_at` is the commit time."""
    if not decision.publish or decision.version is None:
        raise ValueError(f"decision {decision.reason!r} publishes no version")
    if result.value is None or result.status == "insufficient":
        raise ValueError("an insufficient result has no official value")
    return OfficialValue(
        reference_data_id=reference_data_id,
        snap=_as_utc(snap),
        version=decision.version,
        value=result.value,
        status=result.status,
        method=result.method,
        sources_used=result.sources_used,
        sources_excluded=result.sources_excluded,
        quality=result.quality,
        supersedes=decision.supersedes,
        recorded_at=_as_utc(recorded_at),
    )


def _as_utc(ts: datetime) -> datetime:
    # astimezone() would silently read a naive timestamp as local time.
    if ts.tzinfo is None:
        raise ValueError("naive timestamp")
    return ts.astimezone(UTC)


_exclusions = msgspec.json.Decoder(tuple[Exclusion, ...])


class Columns(Protocol):
    """A row read by column name (a dict, an asyncpg Record)."""

    def __getitem__(self, column: str, /) -> Any: ...


def official_value_from_columns(row: Columns) -> OfficialValue:
    """A version from a row of the official-values table or of its lake dataset (the two
    share column names: `quality_score`, `completeness`, ..., and `sources_excluded` as
    JSON text)."""
    return OfficialValue(
        reference_data_id=row["reference_data_id"],
        snap=row["snap"],
        version=row["version"],
        value=row["value"],
        status=row["status"],
        method=row["method"],
        sources_used=tuple(row["sources_used"]),
        sources_excluded=_exclusions.decode(row["sources_excluded"]),
        quality=Quality(
            score=row["quality_score"],
            completeness=row["completeness"],
            timeliness=row["timeliness"],
            consistency=row["consistency"],
            validity=row["validity"],
        ),
        supersedes=row["supersedes"],
        recorded_at=row["recorded_at"],
    )
