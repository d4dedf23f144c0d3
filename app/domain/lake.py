"""The data lake's rules: which hours are closed, where an hour's objects live, what its
manifest says. Pure: no I/O; the S3 adapter and the archive service use these.

Layout (one bucket; `<hh>` is the UTC hour the rows belong to):

- `reference-data/<series>/<yyyy>/<mm>/<dd>/<hh>/` : a series' objects of that hour, the
  prefix scheme of the deployment architecture. `official-values-g<gen>.parquet` (every
  version with its `recorded_at`) and `observations-g<gen>.parquet`.
- `audit/<yyyy>/<mm>/<dd>/<hh>/audit-g<gen>.avro` : the audit records of the hour.
- `manifests/<yyyy>/<mm>/<dd>/<hh>/g<gen>.json` : what a generation of the hour holds.

An hour's rows: official values and observations by their `snap`, audit records by `at`.
A generation is immutable: a re-run writes the same keys with the same bytes (creation is
conditional, so an existing key is never overwritten), and a late correction to an
archived hour is a new generation, with its own objects and manifest. Readers take the
highest generation whose manifest exists: the manifest is written last, so a generation
without one (a crash mid-hour) is invisible and is written again by the next run.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgspec

__all__ = [
    "AUDIT",
    "DATASETS",
    "HOUR",
    "OBSERVATIONS",
    "OFFICIAL_VALUES",
    "DatasetSummary",
    "Manifest",
    "ManifestObject",
    "audit_key",
    "closed_hours",
    "hour_of",
    "hour_path",
    "manifest_key",
    "manifest_prefix",
    "series_object_key",
]

HOUR = timedelta(hours=1)
OFFICIAL_VALUES = "official-values"
OBSERVATIONS = "observations"
AUDIT = "audit"
DATASETS = (OFFICIAL_VALUES, OBSERVATIONS, AUDIT)


def hour_of(t: datetime) -> datetime:
    """The start of the UTC hour holding `t` (timezone-aware)."""
    if t.tzinfo is None:
        raise ValueError("a lake hour needs a timezone-aware time")
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def closed_hours(now: datetime, settle: timedelta, after: datetime | None) -> Iterator[datetime]:
    """The hours to archive, oldest first: those that ended at least `settle` ago (the
    reconciliation window plus the late-observation grace: nothing new is expected), and
    start after `after` (the newest hour archived so far; None: none yet, nothing to
    continue from, so the caller gives the first hour with data)."""
    if after is None:
        return
    hour = hour_of(after) + HOUR
    while hour + HOUR + settle <= now:
        yield hour
        hour += HOUR


def hour_path(hour: datetime) -> str:
    """`yyyy/mm/dd/hh` of an hour."""
    h = hour_of(hour)
    return f"{h:%Y/%m/%d/%H}"


def series_object_key(dataset: str, series: str, hour: datetime, generation: int) -> str:
    if dataset not in (OFFICIAL_VALUES, OBSERVATIONS):
        raise ValueError(f"{dataset!r} is not a per-series dataset")
    return f"reference-data/{series}/{hour_path(hour)}/{dataset}-g{generation:04d}.parquet"


def audit_key(hour: datetime, generation: int) -> str:
    return f"audit/{hour_path(hour)}/audit-g{generation:04d}.avro"


def manifest_prefix(hour: datetime) -> str:
    return f"manifests/{hour_path(hour)}/"


def manifest_key(hour: datetime, generation: int) -> str:
    return f"{manifest_prefix(hour)}g{generation:04d}.json"


class ManifestObject(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    dataset: str
    series: str | None  # None for the audit object
    rows: int
    bytes: int
    sha256: str  # of the object's bytes


class DatasetSummary(msgspec.Struct, frozen=True, kw_only=True):
    rows: int
    # Of the rows as the database holds them (order-independent), so a verification can
    # compare the database with the lake without reading the objects.
    fingerprint: str


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    hour: datetime
    generation: int
    created_at: datetime
    datasets: dict[str, DatasetSummary]
    objects: tuple[ManifestObject, ...]
    supersedes: int | None = None  # the generation this one corrects

    def objects_of(self, dataset: str, series: str | None = None) -> list[ManifestObject]:
        return [
            o
            for o in self.objects
            if o.dataset == dataset and (series is None or o.series == series)
        ]
