"""The data lake's rules: which hours are closed, where an hour's objects live, what its
manifest says. Pure: no I/O; the S3 adapter and the archive service use these.

Layout (one bucket; `<hh>` is the UTC hour the rows belong to):

- `reference-data/<yyyy>/<mm>/<dd>/<hh>/` : the hour's Parquet objects, every series in
  one object per dataset, rows sorted by series then snap (row-group statistics let a
  reader of one series skip the rest): `official-values-g<gen>.parquet` (every version
  with its `recorded_at`) and `observations-g<gen>.parquet`. One object per series-hour
  (the deployment architecture's example) was measured against this and loses: 10,000
  series make 10,000 small PUTs and GETs an hour (benchmarks/results/lake.md).
- `audit/<yyyy>/<mm>/<dd>/<hh>/audit-g<gen>.avro` : the audit records of the hour.
- `manifests/<yyyy>/<mm>/<dd>/<hh>/g<gen>.json` : what a generation of the hour holds.
  Readers find the objects through it (its `objects`), never by guessing keys.

An hour's rows: official values and observations by their `snap`, audit records by `at`.
Only hours holding rows are archived: an hour without rows has no manifest, so "no
manifest" before the newest archived hour means "no rows".
A generation is immutable: a re-run writes the same keys with the same bytes (creation is
conditional, so an existing key is never overwritten), and a late correction to an
archived hour is a new generation, with its own objects and manifest. Readers take the
highest generation whose manifest exists: the manifest is written last, so a generation
without one (a crash mid-hour) is invisible and is written again by the next run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

__all__ = [
    "AUDIT",
    "DATASETS",
    "HOUR",
    "OBSERVATIONS",
    "OFFICIAL_VALUES",
    "DatasetExport",
    "DatasetSummary",
    "HourExport",
    "Manifest",
    "ManifestObject",
    "ObjectConflict",
    "audit_key",
    "closed_before",
    "hour_object_key",
    "hour_of",
    "hour_path",
    "manifest_key",
    "manifest_prefix",
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


def closed_before(now: datetime, settle: timedelta) -> datetime:
    """The end of the closed hours: an hour is closed, its rows to archive, when it ended
    at least `settle` ago (the reconciliation window plus the late-observation grace:
    nothing new is expected), that is when it starts before this time."""
    return hour_of(now - settle)


def hour_path(hour: datetime) -> str:
    """`yyyy/mm/dd/hh` of an hour."""
    h = hour_of(hour)
    return f"{h:%Y/%m/%d/%H}"


def hour_object_key(dataset: str, hour: datetime, generation: int) -> str:
    """The Parquet object of a dataset's hour (every series, sorted by series)."""
    if dataset not in (OFFICIAL_VALUES, OBSERVATIONS):
        raise ValueError(f"{dataset!r} is not a Parquet dataset")
    return f"reference-data/{hour_path(hour)}/{dataset}-g{generation:04d}.parquet"


def audit_key(hour: datetime, generation: int) -> str:
    return f"audit/{hour_path(hour)}/audit-g{generation:04d}.avro"


def manifest_prefix(hour: datetime) -> str:
    return f"manifests/{hour_path(hour)}/"


def manifest_key(hour: datetime, generation: int) -> str:
    return f"{manifest_prefix(hour)}g{generation:04d}.json"


class ObjectConflict(RuntimeError):
    """A lake key already holds other bytes than the ones to write: never overwritten."""

    def __init__(self, key: str) -> None:
        super().__init__(f"lake object {key} already exists with other content")
        self.key = key


class ManifestObject(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    dataset: str
    # The one series the object holds; None when it holds several (the hour objects) or
    # none (the audit object). first/last_series: the range of series it holds, sorted.
    series: str | None
    rows: int
    bytes: int
    sha256: str  # of the object's bytes
    first_series: str | None = None
    last_series: str | None = None


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
        """The objects of `dataset`; with `series`, those that may hold its rows."""
        return [o for o in self.objects if o.dataset == dataset and _may_hold(o, series)]


def _may_hold(o: ManifestObject, series: str | None) -> bool:
    if series is None:
        return True
    if o.series is not None:
        return o.series == series
    if o.first_series is None or o.last_series is None:
        return o.rows > 0
    return o.first_series <= series <= o.last_series


class DatasetExport(msgspec.Struct, frozen=True, kw_only=True):
    """One dataset of an hour as read from the database in one snapshot: its summary and,
    when encoded, the object's bytes (None: no rows, no object)."""

    dataset: str
    summary: DatasetSummary
    data: bytes | None = None
    first_series: str | None = None
    last_series: str | None = None


class HourExport(msgspec.Struct, frozen=True, kw_only=True):
    """An hour's datasets from one database snapshot. `as_of`: every row stored before it
    is in the snapshot (the start of the oldest transaction still open then), so a row
    stored later is one the export may not have seen."""

    datasets: list[DatasetExport]
    as_of: datetime
