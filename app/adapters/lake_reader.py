"""Reading the data lake: DuckDB over Arrow datasets built from the hours' manifests.

The reads of the query API (`QueryStore`), answered from the lake with the database's
rules (app/adapters/postgres/queries.py says them in SQL; here the same statements run in
DuckDB), so `QueryService` over this store answers what it answers over PostgreSQL.

How a read finds its rows, and what it prunes (`ScanReport` says what it scanned):

1. *Hours*: only the hours that hold a time of the range (`hours_between`); for a point
   read, the snap's hour. Per hour the highest generation's manifest.
2. *Objects*: from the manifest's object list (`Manifest.objects`), those of the dataset
   and the series (an object with no series holds several and is kept). The key layout is
   never assumed.
3. *Row groups*: pyarrow reads each object's footer and keeps the row groups whose
   statistics may hold the series and the range (`split_by_row_group`).
4. *Columns and rows*: DuckDB scans the resulting pyarrow dataset with its filters and
   projection pushed into the scan.

No httpfs: DuckDB does not fetch from S3 itself (its extension is downloaded at run
time); pyarrow's S3 filesystem reads the objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from app.adapters.s3_lake import LAKE_ERRORS, S3Lake, s3_client
from app.domain.lake import OBSERVATIONS, OFFICIAL_VALUES, Manifest
from app.domain.lake_reading import hours_between
from app.domain.observation import Observation
from app.domain.quality import SCORE_DECIMALS
from app.domain.reading import (
    GRANULARITY_STEP,
    Granularity,
    HistoryItem,
    QualityAverages,
    QualitySummary,
)
from app.domain.timestamps import rfc3339
from app.domain.versions import OfficialValue, official_value_from_columns
from app.settings import LakeSettings

_attributes = msgspec.json.Decoder(dict[str, Any] | None)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IO_THREADS = 16
# The S3 adapter's boto3 client keeps 10 connections (botocore's default pool).
_MANIFEST_THREADS = 8

SERIES_COLUMN = "reference_data_id"
SNAP_COLUMN = "snap"

_OV = (
    "reference_data_id, snap, version, value, status, method, sources_used, "
    "sources_excluded, quality_score, completeness, timeliness, consistency, validity, "
    "supersedes, recorded_at"
)
_OBS = (
    "observation_id, reference_data_id, source, snap, value, observed_at, received_at, attributes"
)
# $s series, $a from (inclusive), $b to (exclusive), $t as_of or NULL, $n limit.
_KNOWN = "($t::TIMESTAMPTZ IS NULL OR recorded_at <= $t)"
_RANGE = "reference_data_id = $s AND snap >= $a AND snap < $b"

_LATEST = f"SELECT {_OV} FROM rows WHERE {_RANGE} ORDER BY version DESC LIMIT 1"
_VERSION = f"SELECT {_OV} FROM rows WHERE {_RANGE} AND version = $v"
_AS_OF = f"SELECT {_OV} FROM rows WHERE {_RANGE} AND {_KNOWN} ORDER BY version DESC LIMIT 1"
_VERSIONS = f"SELECT {_OV} FROM rows WHERE {_RANGE} ORDER BY version"
_HISTORY_RAW = f"""
SELECT DISTINCT ON (snap) {_OV} FROM rows WHERE {_RANGE} AND {_KNOWN}
ORDER BY snap, version DESC LIMIT $n"""
# Buckets by epoch microseconds: UTC-aligned whatever the session's time zone, as
# PostgreSQL's date_trunc(unit, snap, 'UTC') for minute, hour and day.
_HISTORY_BUCKETS = f"""
WITH latest AS (
    SELECT DISTINCT ON (snap) {_OV}, epoch_us(snap) // $u * $u AS bucket_us
    FROM rows WHERE {_RANGE} AND {_KNOWN}
    ORDER BY snap, version DESC
)
SELECT DISTINCT ON (bucket_us) *, count(*) OVER (PARTITION BY bucket_us) AS count
FROM latest ORDER BY bucket_us, snap DESC LIMIT $n"""
_OBSERVATIONS = f"""
SELECT {_OBS} FROM rows
WHERE {_RANGE}
  AND ($r::TIMESTAMPTZ IS NULL OR received_at > $r OR (received_at = $r AND observation_id > $i))
ORDER BY received_at, observation_id LIMIT $n"""
_QUALITY = f"""
WITH latest AS (
    SELECT DISTINCT ON (snap) status, quality_score AS score, completeness, timeliness,
           consistency, validity
    FROM rows WHERE {_RANGE} ORDER BY snap, version DESC
)
SELECT count(*) AS count, avg(score) AS average_score, min(score) AS minimum_score,
       count(*) FILTER (WHERE status = 'suspect') AS suspect_count,
       avg(completeness) AS completeness, avg(timeliness) AS timeliness,
       avg(consistency) AS consistency, avg(validity) AS validity
FROM latest"""
# Every series (or those of $ids) as known at $t: the backtest's panel.
_PANEL = f"""
SELECT DISTINCT ON (reference_data_id, snap) {_OV} FROM rows
WHERE snap >= $a AND snap < $b AND {_KNOWN}
ORDER BY reference_data_id, snap, version DESC"""
_PANEL_OF = _PANEL.replace("WHERE snap", "WHERE list_contains($ids, reference_data_id) AND snap")


@dataclass
class ScanReport:
    """What one lake read touched: the pruning at each level, and the engine's plan."""

    dataset: str
    start: datetime
    end: datetime
    series: str | None
    hours: int = 0  # hours in the range
    manifests: int = 0  # of those, hours the lake holds (a manifest read)
    objects_listed: int = 0  # objects of the dataset in those manifests
    objects: list[str] = field(default_factory=list)  # objects opened (footer read)
    row_groups_total: int = 0  # row groups of the opened objects
    row_groups: int = 0  # row groups scanned (statistics may match)
    bytes: int = 0  # compressed bytes of the scanned row groups
    rows: int = 0  # rows the query returned
    seconds: float = 0.0
    plan: str = ""

    def text(self) -> str:
        """Human-readable, one fact per line (what `qis lake query --explain` prints)."""
        lines = [
            f"dataset      {self.dataset}  series {self.series or '(all)'}",
            f"range        [{rfc3339(self.start)}, {rfc3339(self.end)})",
            f"hours        {self.hours} in range, {self.manifests} with a manifest",
            f"objects      {len(self.objects)} opened of {self.objects_listed} listed",
            f"row groups   {self.row_groups} scanned of {self.row_groups_total}",
            f"bytes        {self.bytes} (compressed, scanned row groups)",
            f"rows         {self.rows}",
            f"seconds      {self.seconds:.3f}",
        ]
        lines += [f"object       {key}" for key in self.objects]
        if self.plan:
            lines += ["plan", self.plan]
        return "\n".join(lines)


def s3_filesystem(settings: LakeSettings, **extra: Any) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for the lake's endpoint (the AWS default when empty)."""
    options: dict[str, Any] = {"region": settings.region, **extra}
    if settings.endpoint_url:
        scheme, _, host = settings.endpoint_url.partition("://")
        options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    if settings.access_key_id:
        options.update(access_key=settings.access_key_id, secret_key=settings.secret_access_key)
    return pafs.S3FileSystem(**options)


class LakeUnavailable(OSError):
    """S3 did not answer a read of the lake (an OSError, as pyarrow's S3 errors are: the
    api answers 503, as for any store that does not answer)."""


class LakeFiles:
    """The lake's bucket: manifests through the S3 adapter (`S3Lake`), the Parquet objects
    through pyarrow's S3 filesystem (ranged reads of footers and column chunks)."""

    def __init__(self, lake: S3Lake, filesystem: pafs.FileSystem) -> None:
        self.lake = lake
        self.filesystem = filesystem
        self.format = ds.ParquetFileFormat()

    @classmethod
    def from_settings(cls, settings: LakeSettings, bucket: str = "") -> LakeFiles:
        lake = S3Lake(s3_client(settings), bucket or settings.bucket)
        return cls(lake, s3_filesystem(settings))

    def path(self, key: str) -> str:
        return f"{self.lake.bucket}/{self.lake.prefix}{key}"

    def manifest(self, hour: datetime) -> Manifest | None:
        """The newest generation's manifest of the hour, or None when it is not archived."""
        try:
            return self.lake.newest_manifest(hour)
        except LAKE_ERRORS as exc:
            raise LakeUnavailable(f"s3 bucket {self.lake.bucket}: {exc}") from exc

    def fragment(self, key: str) -> ds.ParquetFileFragment:
        return self.format.make_fragment(self.path(key), self.filesystem)


class LakeReader:
    """Answers SQL over a dataset's rows of a range, reading only what may match."""

    def __init__(self, files: LakeFiles, *, explain: bool = False) -> None:
        self._files = files
        self._explain = explain

    def manifests(self, hours: Sequence[datetime]) -> list[Manifest]:
        with ThreadPoolExecutor(min(_MANIFEST_THREADS, max(1, len(hours)))) as pool:
            found = list(pool.map(self._files.manifest, hours))
        return [m for m in found if m is not None]

    def select(
        self,
        dataset: str,
        start: datetime,
        end: datetime,
        series: str | Sequence[str] | None,
        sql: str,
        params: dict[str, Any],
    ) -> tuple[pa.Table | None, ScanReport]:
        """Run `sql` over the view `rows` of the dataset's rows with a snap in `[start,
        end)` (of `series`: one id, several, or None for all); None when nothing matches."""
        started = datetime.now(UTC)
        label = series if isinstance(series, str) or series is None else f"{len(series)} ids"
        report = ScanReport(dataset=dataset, start=start, end=end, series=label)
        hours = hours_between(start, end)
        report.hours = len(hours)
        manifests = self.manifests(hours)
        report.manifests = len(manifests)
        wanted = {series} if isinstance(series, str) else None if series is None else set(series)
        keys: list[str] = []
        for manifest in manifests:
            report.objects_listed += len(manifest.objects_of(dataset))
            # One series: the objects that may hold it (its own, or a bundle whose range of
            # series covers it); several: every object, the row groups prune the rest.
            may_hold = manifest.objects_of(dataset, series if isinstance(series, str) else None)
            keys += [o.key for o in may_hold if o.rows > 0]
        predicate = (ds.field(SNAP_COLUMN) >= pa.scalar(start, pa.timestamp("us", "UTC"))) & (
            ds.field(SNAP_COLUMN) < pa.scalar(end, pa.timestamp("us", "UTC"))
        )
        if wanted is not None:
            predicate &= ds.field(SERIES_COLUMN).isin(pa.array(sorted(wanted), pa.string()))
        with ThreadPoolExecutor(min(_IO_THREADS, max(1, len(keys)))) as pool:
            opened = list(pool.map(lambda key: self._row_groups(key, predicate), keys))
        fragments: list[ds.ParquetFileFragment] = []
        schemas: list[pa.Schema] = []
        for key, (total, kept, size, schema) in zip(keys, opened, strict=True):
            report.objects.append(key)
            report.row_groups_total += total
            report.row_groups += len(kept)
            report.bytes += size
            fragments += kept
            schemas.append(schema)
        table = None
        if fragments:
            dataset_rows = ds.FileSystemDataset(
                fragments, pa.unify_schemas(schemas), self._files.format, self._files.filesystem
            )
            table = _query(dataset_rows, sql, params, self._explain, report)
            report.rows = table.num_rows
        report.seconds = (datetime.now(UTC) - started).total_seconds()
        return table, report

    def _row_groups(
        self, key: str, predicate: ds.Expression
    ) -> tuple[int, list[ds.ParquetFileFragment], int, pa.Schema]:
        fragment = self._files.fragment(key)
        kept = fragment.split_by_row_group(predicate)
        metadata = fragment.metadata
        size = 0
        for part in kept:
            for rg in part.row_groups:
                meta = metadata.row_group(rg.id)
                size += sum(meta.column(c).total_compressed_size for c in range(meta.num_columns))
        return metadata.num_row_groups, kept, size, fragment.physical_schema


def _query(
    rows: ds.Dataset, sql: str, params: dict[str, Any], explain: bool, report: ScanReport
) -> pa.Table:
    conn = duckdb.connect()
    try:
        conn.execute("SET TimeZone = 'UTC'")
        conn.register("rows", rows)
        if explain:
            report.plan = "\n".join(r[1] for r in conn.execute(f"EXPLAIN {sql}", params).fetchall())
        return conn.sql(sql, params=params).to_arrow_table()
    finally:
        conn.close()


def observation_of(row: dict[str, Any]) -> Observation:
    """The domain struct of an observations row."""
    attributes = row["attributes"]
    return Observation(
        observation_id=row["observation_id"],
        reference_data_id=row["reference_data_id"],
        source=row["source"],
        snap=row["snap"],
        value=row["value"],
        observed_at=row["observed_at"],
        received_at=row["received_at"],
        attributes=None if attributes is None else _attributes.decode(attributes),
    )


def _rows(table: pa.Table | None) -> list[dict[str, Any]]:
    return [] if table is None else table.to_pylist()


def _snap_range(snap: datetime) -> tuple[datetime, datetime]:
    # A snap's rows are in its hour; the range is the snap itself.
    return snap, snap + timedelta(microseconds=1)


class LakeQueries:
    """`QueryStore` over the lake (the reads run in a thread: pyarrow and DuckDB block).

    `on_scan` receives the `ScanReport` of every read (`qis lake query --explain`).
    """

    def __init__(
        self,
        reader: LakeReader,
        on_scan: Callable[[ScanReport], None] | None = None,
    ) -> None:
        self._reader = reader
        self._on_scan = on_scan

    def _select(
        self,
        dataset: str,
        start: datetime,
        end: datetime,
        series: str | Sequence[str] | None,
        sql: str,
        **params: Any,
    ) -> list[dict[str, Any]]:
        if isinstance(series, str):
            params["s"] = series
        table, report = self._reader.select(
            dataset, start, end, series, sql, params | {"a": start, "b": end}
        )
        if self._on_scan is not None:
            self._on_scan(report)
        return _rows(table)

    def _official(
        self, series: str, snap: datetime, sql: str, **params: Any
    ) -> list[OfficialValue]:
        start, end = _snap_range(snap)
        return [
            official_value_from_columns(r)
            for r in self._select(OFFICIAL_VALUES, start, end, series, sql, **params)
        ]

    async def latest(
        self, series: str, snap: datetime, *, primary: bool = False
    ) -> OfficialValue | None:
        found = await asyncio.to_thread(self._official, series, snap, _LATEST)
        return found[0] if found else None

    async def version(self, series: str, snap: datetime, version: int) -> OfficialValue | None:
        found = await asyncio.to_thread(self._official, series, snap, _VERSION, v=version)
        return found[0] if found else None

    async def as_of(self, series: str, snap: datetime, as_of: datetime) -> OfficialValue | None:
        found = await asyncio.to_thread(self._official, series, snap, _AS_OF, t=as_of)
        return found[0] if found else None

    async def versions(self, series: str, snap: datetime) -> list[OfficialValue]:
        return await asyncio.to_thread(self._official, series, snap, _VERSIONS)

    def history_sync(
        self,
        series: str,
        start: datetime,
        end: datetime,
        granularity: Granularity,
        as_of: datetime | None,
        limit: int,
    ) -> list[HistoryItem]:
        step = GRANULARITY_STEP[granularity]
        if step is None:
            rows = self._select(OFFICIAL_VALUES, start, end, series, _HISTORY_RAW, t=as_of, n=limit)
            return [_history_item(r, None) for r in rows]
        step_us = step // timedelta(microseconds=1)
        rows = self._select(
            OFFICIAL_VALUES, start, end, series, _HISTORY_BUCKETS, t=as_of, n=limit, u=step_us
        )
        return [_history_item(r, r["bucket_us"]) for r in rows]

    async def history(
        self,
        series: str,
        start: datetime,
        end: datetime,
        granularity: Granularity,
        as_of: datetime | None,
        limit: int,
    ) -> list[HistoryItem]:
        return await asyncio.to_thread(
            self.history_sync, series, start, end, granularity, as_of, limit
        )

    def observations_sync(
        self, series: str, snap: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Observation]:
        received, after_id = after if after is not None else (None, "")
        start, end = _snap_range(snap)
        rows = self._select(
            OBSERVATIONS, start, end, series, _OBSERVATIONS, r=received, i=after_id, n=limit
        )
        return [observation_of(r) for r in rows]

    async def observations(
        self, series: str, snap: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Observation]:
        return await asyncio.to_thread(self.observations_sync, series, snap, after, limit)

    def quality_sync(self, series: str, start: datetime, end: datetime) -> QualitySummary:
        rows = self._select(OFFICIAL_VALUES, start, end, series, _QUALITY)
        row = rows[0] if rows else {"count": 0}
        count = int(row["count"])
        if count == 0:
            return QualitySummary(
                reference_data_id=series,
                from_=start,
                to=end,
                count=0,
                average_score=None,
                minimum_score=None,
                suspect_count=0,
                average_dimensions=None,
            )
        return QualitySummary(
            reference_data_id=series,
            from_=start,
            to=end,
            count=count,
            average_score=round(row["average_score"], SCORE_DECIMALS),
            minimum_score=round(row["minimum_score"], SCORE_DECIMALS),
            suspect_count=int(row["suspect_count"]),
            average_dimensions=QualityAverages(
                completeness=round(row["completeness"], SCORE_DECIMALS),
                timeliness=round(row["timeliness"], SCORE_DECIMALS),
                consistency=round(row["consistency"], SCORE_DECIMALS),
                validity=round(row["validity"], SCORE_DECIMALS),
            ),
        )

    async def quality(self, series: str, start: datetime, end: datetime) -> QualitySummary:
        return await asyncio.to_thread(self.quality_sync, series, start, end)

    def panel(
        self,
        start: datetime,
        end: datetime,
        *,
        series: Iterable[str] | None = None,
        as_of: datetime | None = None,
    ) -> pa.Table:
        """Every series' (or those given) official value per snap in `[start, end)` as
        known at `as_of` (latest without), as an Arrow table: the backtest's panel."""
        wanted = None if series is None else sorted(set(series))
        params: dict[str, Any] = {"t": as_of}
        if wanted is not None:
            sql = _PANEL_OF
            params["ids"] = wanted
        else:
            sql = _PANEL
        table, report = self._reader.select(
            OFFICIAL_VALUES, start, end, wanted, sql, params | {"a": start, "b": end}
        )
        if self._on_scan is not None:
            self._on_scan(report)
        return table if table is not None else pa.table({})


def _history_item(row: dict[str, Any], bucket_us: int | None) -> HistoryItem:
    value = official_value_from_columns(row)
    if bucket_us is None:
        return HistoryItem(**msgspec.structs.asdict(value), bucket=value.snap, count=1)
    return HistoryItem(
        **msgspec.structs.asdict(value),
        bucket=_EPOCH + timedelta(microseconds=bucket_us),
        count=int(row["count"]),
    )
