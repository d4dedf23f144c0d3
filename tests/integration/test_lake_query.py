"""Lake reads against the real PostgreSQL and the stack's S3 (moto): the same rows in both,
the same `QueryService` over each store, byte-identical answers; pruning shown by the
scan reports; reads older than the retention horizon answered from the lake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from app.adapters.failures import is_transient
from app.adapters.lake_reader import (
    LakeFiles,
    LakeQueries,
    LakeReader,
    LakeUnavailable,
    ScanReport,
    s3_filesystem,
)
from app.adapters.postgres.archive import PostgresArchiveSource
from app.adapters.postgres.horizon import PostgresLakeHorizon
from app.adapters.postgres.observations import insert_observations
from app.adapters.postgres.official_values import insert_versions
from app.adapters.postgres.queries import PostgresQueries
from app.adapters.s3_lake import S3Lake
from app.domain.lake import HOUR, OBSERVATIONS, OFFICIAL_VALUES, hour_of
from app.domain.observation import Observation
from app.domain.quality import Quality
from app.domain.reconciliation import Exclusion
from app.domain.versions import OfficialValue
from app.entrypoints.cli import main
from app.services.archive import Archiver
from app.services.lake_query import TieredQueries, uncached_query_service
from app.services.query import QueryService
from app.settings import LakeSettings, Settings
from tests.conftest import unique_series
from tests.integration.lake_helpers import lake_settings, own_lake
from tests.integration.lake_rows import write_hour

pytestmark = pytest.mark.integration

DAY = datetime(2026, 1, 15, tzinfo=UTC)
GRANULARITIES = ("raw", "1m", "1h", "1d")


def version(
    series: str,
    snap: datetime,
    n: int,
    value: float,
    recorded_at: datetime,
    *,
    status: str = "official",
) -> OfficialValue:
    return OfficialValue(
        reference_data_id=series,
        snap=snap,
        version=n,
        value=value,
        status=status,  # type: ignore[arg-type]
        method="median",
        sources_used=("a", "b") if n == 1 else ("a", "b", "c"),
        sources_excluded=(Exclusion(source="c", reason="outlier"),) if n == 1 else (),
        quality=Quality(
            score=1.0 if status == "official" else 0.6667,
            completeness=1.0,
            timeliness=0.75 + n / 100,
            consistency=0.9,
            validity=1.0,
        ),
        supersedes=n - 1 if n > 1 else None,
        recorded_at=recorded_at,
    )


class Rows(msgspec.Struct):
    official: list[OfficialValue]
    observations: list[Observation]
    corrected: list[datetime]  # snaps with a version 2


def make_rows(series: str, hours: int, every: timedelta = timedelta(minutes=10)) -> Rows:
    """Snaps every `every` from DAY 00:00 on; every third snap corrected 90 minutes later
    (version 2, recorded in a later hour than its snap's); three sources each."""
    official: list[OfficialValue] = []
    observations: list[Observation] = []
    corrected = []
    snap = DAY
    i = 0
    while snap < DAY + hours * HOUR:
        official.append(version(series, snap, 1, 100 + i * 0.25, snap + timedelta(seconds=5)))
        if i % 3 == 1:
            corrected.append(snap)
            official.append(
                version(
                    series,
                    snap,
                    2,
                    100 + i * 0.25 + 0.125,
                    snap + timedelta(minutes=90),
                    status="suspect",
                )
            )
        for k, source in enumerate(("a", "b", "c")):
            observations.append(
                Observation(
                    observation_id=f"{series}-{i}-{source}",
                    reference_data_id=series,
                    source=source,
                    snap=snap,
                    value=100 + i * 0.25 + k / 1000,
                    observed_at=snap + timedelta(seconds=k),
                    received_at=snap + timedelta(seconds=2 + (k // 2)),
                    attributes={"n": i, "venue": source} if k == 0 else None,  # jsonb key order
                )
            )
        snap += every
        i += 1
    return Rows(official=official, observations=observations, corrected=corrected)


def merged(*parts: Rows) -> Rows:
    return Rows(
        official=[v for p in parts for v in p.official],
        observations=[o for p in parts for o in p.observations],
        corrected=[s for p in parts for s in p.corrected],
    )


def archive(files: LakeFiles, rows: Rows, hours: int, *, per_series: bool = False) -> None:
    for h in range(hours):
        start = DAY + h * HOUR
        end = start + HOUR
        write_hour(
            files.lake,
            start,
            [v for v in rows.official if start <= v.snap < end],
            [o for o in rows.observations if start <= o.snap < end],
            per_series=per_series,
        )


__all__ = ["own_lake"]


@pytest.fixture
def lake(own_lake: S3Lake, settings: Settings) -> LakeFiles:
    return LakeFiles(own_lake, s3_filesystem(lake_settings(settings, own_lake.bucket)))


async def store_in_db(pool: asyncpg.Pool, rows: Rows) -> None:
    async with pool.acquire() as conn:
        await insert_versions(conn, rows.official)
        await insert_observations(conn, rows.observations)


@pytest.fixture
async def database(pool: asyncpg.Pool) -> QueryService:
    return uncached_query_service(PostgresQueries(pool, pool))


def lake_service(files: LakeFiles, reports: list[ScanReport] | None = None) -> QueryService:
    on_scan = None if reports is None else reports.append
    return uncached_query_service(LakeQueries(LakeReader(files), on_scan))


async def drop_before(pool: asyncpg.Pool, horizon: datetime) -> None:
    """Retention (as app/services/retention.py does it, by day partitions): the rows before
    `horizon` leave the database and the horizon moves, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        for table in ("official_values", "observations"):
            await conn.execute(f"DELETE FROM {table} WHERE snap < $1", horizon)
        await conn.executemany(
            "INSERT INTO lake_horizon (dataset, retained_from) VALUES ($1, $2)",
            [(OFFICIAL_VALUES, horizon), (OBSERVATIONS, horizon)],
        )


def tiered_service(pool: asyncpg.Pool, lake: LakeFiles, reports: list[ScanReport]) -> QueryService:
    """The api's reads: the database, and the lake before the horizon (scans reported)."""
    return uncached_query_service(
        TieredQueries(
            PostgresQueries(pool, pool),
            lambda: LakeQueries(LakeReader(lake), reports.append),
            PostgresLakeHorizon(pool),
        )
    )


async def every_page(service: QueryService, read: str, *args: Any, **kwargs: Any) -> list[bytes]:
    pages = []
    cursor = None
    for _ in range(1000):
        body = await getattr(service, read)(*args, cursor=cursor, **kwargs)
        pages.append(body)
        cursor = msgspec.json.decode(body)["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("more than 1000 pages")


async def answers(service: QueryService, series: str, rows: Rows, hours: int) -> dict[str, Any]:
    """Every read of the query API over the data, each as the encoded body it returns."""
    out: dict[str, Any] = {}
    end = DAY + hours * HOUR
    snap = rows.corrected[1]
    v1, v2 = (v.recorded_at for v in rows.official if v.snap == snap)
    for name, as_of in {
        "none": None,
        "before-v1": v1 - timedelta(microseconds=1),
        "at-v1": v1,
        "between": v2 - timedelta(seconds=1),
        "at-v2": v2,
    }.items():
        if as_of is not None:
            out[f"point-{name}"] = await service.official_value(series, snap, as_of=as_of)
        for granularity in GRANULARITIES:
            for start, stop in (
                (DAY, end),
                (DAY + timedelta(minutes=35), end - timedelta(minutes=25)),
            ):
                out[f"history-{name}-{granularity}-{start:%H%M}"] = await every_page(
                    service,
                    "history",
                    series,
                    start,
                    stop,
                    granularity=granularity,
                    as_of=as_of,
                    limit=7,
                )
    out["latest"] = await service.official_value(series, snap)
    for n in (1, 2, 3):
        out[f"version-{n}"] = await service.official_value(series, snap, version=n)
    out["versions"] = await service.versions(series, snap)
    out["versions-none"] = await service.versions(series, DAY + timedelta(minutes=1))
    for s in (DAY, snap, end - timedelta(minutes=10)):
        out[f"lineage-{s:%H%M}"] = await every_page(service, "lineage", series, s, limit=2)
    out["quality"] = await service.quality(series, start=DAY, end=end)
    out["quality-part"] = await service.quality(series, start=snap, end=end - HOUR)
    return out


async def test_the_lake_answers_every_read_as_postgresql_does(
    pool: asyncpg.Pool, database: QueryService, lake: LakeFiles
) -> None:
    series = unique_series("LQ")
    hours = 3
    rows = make_rows(series, hours)
    await store_in_db(pool, rows)
    other = make_rows(unique_series("LQO"), hours)  # another series in the same hours
    archive(lake, merged(rows, other), hours)

    expected = await answers(database, series, rows, hours)
    got = await answers(lake_service(lake), series, rows, hours)

    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], key
    # The comparison is not vacuous: corrections are seen as of their time.
    # Snaps 00:10 and 00:40 were corrected at 01:40 and 02:10; "between" is 02:09:59.
    between = msgspec.json.decode(expected["history-between-raw-0000"][0])["items"]
    assert [i["version"] for i in between][:5] == [1, 2, 1, 1, 1]
    latest = msgspec.json.decode(expected["history-none-raw-0000"][0])["items"]
    assert [i["version"] for i in latest][:5] == [1, 2, 1, 1, 2]
    assert expected["point-before-v1"] == b""
    assert msgspec.json.decode(expected["point-between"])["version"] == 1
    assert msgspec.json.decode(expected["point-at-v2"])["version"] == 2
    assert len(msgspec.json.decode(expected["lineage-0000"][0])["items"]) == 2


async def test_a_one_series_day_reads_only_that_series_objects_of_its_24_hours(
    lake: LakeFiles,
) -> None:
    """Objects per series-hour: the manifests' series prune the objects."""
    series = [unique_series("LP") for _ in range(3)]
    hours = 26  # the day, and two hours of the next one
    every = timedelta(minutes=30)
    archive(lake, merged(*(make_rows(s, hours, every) for s in series)), hours, per_series=True)
    reports: list[ScanReport] = []
    service = lake_service(lake, reports)

    body = await service.history(series[1], DAY, DAY + timedelta(days=1), limit=1000)

    items = msgspec.json.decode(body)["items"]
    assert len(items) == 48
    assert {i["reference_data_id"] for i in items} == {series[1]}
    (report,) = reports
    assert (report.hours, report.manifests) == (24, 24)
    assert report.objects_listed == 24 * 3  # the day's official-values objects, all series
    assert len(report.objects) == 24
    assert all(f"/{series[1]}/" in key and OFFICIAL_VALUES in key for key in report.objects)
    assert {key.split("/")[4] for key in report.objects} == {"15"}  # the day, not the next
    assert report.row_groups == report.row_groups_total == 24
    assert report.rows == 48
    assert report.bytes > 0


async def test_bundled_objects_are_pruned_by_row_group_statistics(lake: LakeFiles) -> None:
    series = sorted(unique_series("LB") for _ in range(3))
    hours = 1
    every = timedelta(seconds=60)  # 60 snaps an hour, 80 versions: 240 rows, 3 row groups
    rows = [make_rows(s, hours, every) for s in series]
    write_hour(lake.lake, DAY, [v for r in rows for v in r.official])
    reports: list[ScanReport] = []
    service = lake_service(lake, reports)

    body = await service.history(series[0], DAY, DAY + HOUR, limit=1000)

    assert len(msgspec.json.decode(body)["items"]) == 60
    (report,) = reports
    assert len(report.objects) == 1  # the hour's object: its manifest entry names no series
    assert report.row_groups_total == 3
    assert report.row_groups == 1  # the first series' rows fill the first group only


async def test_reads_older_than_the_horizon_come_from_the_lake_after_the_drop(
    empty_pool: asyncpg.Pool, lake: LakeFiles
) -> None:
    """A database of its own: the archive service archives two hours, retention drops them
    and moves `lake_horizon`; the reads answer what they answered before the drop."""
    pool = empty_pool
    database = uncached_query_service(PostgresQueries(pool, pool))
    series = unique_series("LR")
    hours = 4
    rows = make_rows(series, hours)
    await store_in_db(pool, rows)
    archiver = Archiver(PostgresArchiveSource(pool, row_group_rows=8), lake.lake)
    for hour in (DAY, DAY + HOUR):
        assert (await archiver.archive_hour(hour)).generation == 1
        assert await archiver.verify(hour)
    before = await answers(database, series, rows, hours)

    # Retention (as app/services/retention.py does it, by day partitions): the archived
    # hours leave the database and the horizon moves, in one transaction.
    horizon = DAY + 2 * HOUR
    await drop_before(pool, horizon)
    after_drop = await answers(database, series, rows, hours)
    assert after_drop["history-none-raw-0000"] != before["history-none-raw-0000"]

    reports: list[ScanReport] = []
    tiered = tiered_service(pool, lake, reports)
    after = await answers(tiered, series, rows, hours)

    for key in before:
        if key.startswith("quality"):
            continue  # averages of two parts: compared below, to the last decimal
        assert after[key] == before[key], key
    assert {r.dataset for r in reports} == {OFFICIAL_VALUES, OBSERVATIONS}
    assert all(r.end <= horizon + timedelta(microseconds=1) for r in reports)
    for key in ("quality", "quality-part"):
        old, new = msgspec.json.decode(before[key]), msgspec.json.decode(after[key])
        assert new["count"] == old["count"]
        assert new["suspect_count"] == old["suspect_count"]
        assert new["minimum_score"] == old["minimum_score"]
        assert abs(new["average_score"] - old["average_score"]) <= 1e-4


def test_qis_lake_query_prints_the_api_body_and_what_it_scanned(
    lake: LakeFiles, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    series = unique_series("LC")
    rows = make_rows(series, 2)
    archive(lake, rows, 2)
    for name, value in {
        "QIS_LAKE__BUCKET": lake.lake.bucket,
        "QIS_LAKE__ACCESS_KEY_ID": "testing",
        "QIS_LAKE__SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    snap = rows.corrected[1]
    v1, v2 = (v for v in rows.official if v.snap == snap)
    at = (v2.recorded_at - timedelta(seconds=1)).isoformat()

    assert main(["lake", "query", series, "--snap", snap.isoformat(), "--as-of", at]) == 0
    assert capsys.readouterr().out == msgspec.json.encode(v1).decode() + "\n"

    argv = ["lake", "query", series, "--from", DAY.isoformat(), "--to", "2026-01-15T02:00:00Z"]
    assert main([*argv, "--limit", "5", "--all", "--explain"]) == 0
    out, err = capsys.readouterr()
    items = msgspec.json.decode(out)["items"]
    assert len(items) == 12
    assert [i["version"] for i in items][:5] == [1, 2, 1, 1, 2]
    assert "hours        2 in range, 2 with a manifest" in err
    assert "PYTHON_ARROW_SCAN" in err  # DuckDB's plan: the filters pushed into the scan
    assert f"\"reference_data_id\" = '{series}'" in err

    assert main([*argv, "--format", "csv", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("reference_data_id,snap,version,value,status,method")
    assert "quality.score" in lines[0]
    assert len(lines) == 4

    assert main(["lake", "query", series, "--snap", "2026-01-15T00:00:01Z"]) == 1
    assert "404" in capsys.readouterr().err
    for hostile in (
        ["--snap", "yesterday"],
        ["--snap", "2300-01-01T00:00:00Z"],
        ["--snap", DAY.isoformat(), "--version", str(2**40)],
        ["--snap", DAY.isoformat(), "--version", "1", "--as-of", DAY.isoformat()],
        ["--from", DAY.isoformat(), "--to", DAY.isoformat()],
        ["--from", DAY.isoformat(), "--to", "2026-01-16T00:00:00Z", "--cursor", "!!"],
        ["--from", DAY.isoformat(), "--to", "2026-01-16T00:00:00Z", "--limit", "0"],
    ):
        assert main(["lake", "query", series, *hostile]) == 2, hostile
        assert capsys.readouterr().err.startswith("qis lake query: "), hostile
    assert main(["lake", "query", "bad id!", "--snap", DAY.isoformat()]) == 2
    assert "series id" in capsys.readouterr().err

    assert main(["lake", "query", "--from", DAY.isoformat(), "--to", "2026-01-15T01:00:00Z"]) == 0
    panel = [msgspec.json.decode(line) for line in capsys.readouterr().out.splitlines()]
    assert len(panel) == 6
    assert {p["reference_data_id"] for p in panel} == {series}


async def test_a_one_series_day_in_the_archive_layout_scans_only_its_row_groups(
    lake: LakeFiles,
) -> None:
    """One object per hour holding every series sorted: row-group statistics prune."""
    series = sorted(unique_series("LH") for _ in range(8))
    hours = 25
    every = timedelta(minutes=15)
    rows = merged(*(make_rows(s, hours, every) for s in series))
    for h in range(hours):
        start = DAY + h * HOUR
        write_hour(
            lake.lake, start, [v for v in rows.official if start <= v.snap < start + HOUR],
            row_group_rows=4,
        )  # fmt: skip
    reports: list[ScanReport] = []
    service = lake_service(lake, reports)

    body = await service.history(series[3], DAY, DAY + timedelta(days=1), limit=1000)

    items = msgspec.json.decode(body)["items"]
    assert len(items) == 96
    assert {i["reference_data_id"] for i in items} == {series[3]}
    (report,) = reports
    assert (report.hours, report.manifests, len(report.objects)) == (24, 24, 24)
    assert all(key.startswith("reference-data/2026/01/15/") for key in report.objects)
    # 8 series x 5-6 versions an hour in groups of 4: 10-12 groups; one series spans 2-3.
    assert report.row_groups_total >= 24 * 10
    assert report.row_groups <= 24 * 3
    assert report.row_groups * 4 <= report.row_groups_total


def test_an_unreachable_s3_is_a_transient_failure() -> None:
    settings = LakeSettings(
        endpoint_url="http://127.0.0.1:1", access_key_id="x", secret_access_key="y"
    )
    files = LakeFiles.from_settings(settings)
    with pytest.raises(LakeUnavailable) as failure:
        files.manifest(datetime(2026, 1, 15, 14, tzinfo=UTC))
    assert is_transient(failure.value)  # the api answers 503 with Retry-After
    assert "qis-local-data-lake" in str(failure.value)


async def test_a_late_correction_archived_as_a_new_generation_is_read_from_it(
    empty_pool: asyncpg.Pool, lake: LakeFiles
) -> None:
    pool = empty_pool
    series = unique_series("LG")
    rows = make_rows(series, 2)
    first = [v for v in rows.official if v.version == 1]
    await store_in_db(pool, Rows(official=first, observations=rows.observations, corrected=[]))
    archiver = Archiver(PostgresArchiveSource(pool, row_group_rows=8), lake.lake)
    for hour in (DAY, DAY + HOUR):
        assert (await archiver.archive_hour(hour)).generation == 1
    service = lake_service(lake)
    snap = rows.corrected[0]
    assert msgspec.json.decode(await service.official_value(series, snap))["version"] == 1

    # A correction after the hour was archived: the archive writes generation 2.
    async with pool.acquire() as conn:
        await insert_versions(conn, [v for v in rows.official if v.version == 2])
    for hour in (DAY, DAY + HOUR):
        result = await archiver.archive_hour(hour)
        assert (result.generation, result.state) == (2, "corrected")

    database = uncached_query_service(PostgresQueries(pool, pool))
    expected = await answers(database, series, rows, 2)
    got = await answers(service, series, rows, 2)
    for key in expected:
        assert got[key] == expected[key], key
    assert msgspec.json.decode(got["latest"])["version"] == 2
    assert msgspec.json.decode(got["point-between"])["version"] == 1


async def test_hours_the_archive_skipped_read_as_empty_before_the_horizon(
    empty_pool: asyncpg.Pool, lake: LakeFiles
) -> None:
    """Rows in the first and the fourth hour only: the archive writes those two hours,
    no manifest for the two empty ones; after the drop, reads over the empty hours answer
    what the database answered (nothing there), not an error."""
    pool = empty_pool
    series = unique_series("LG")
    full = make_rows(series, 4)
    kept = (DAY, DAY + 3 * HOUR)
    rows = Rows(
        official=[v for v in full.official if hour_of(v.snap) in kept],
        observations=[o for o in full.observations if hour_of(o.snap) in kept],
        corrected=[s for s in full.corrected if hour_of(s) in kept],
    )
    await store_in_db(pool, rows)
    archiver = Archiver(
        PostgresArchiveSource(pool, row_group_rows=8),
        lake.lake,
        clock=lambda: DAY + 6 * HOUR,
    )
    assert [r.hour for r in await archiver.run_round()] == list(kept)
    for h in range(4):
        assert await archiver.verify(DAY + h * HOUR)  # empty hours: nothing on either side
    empty_snap = DAY + timedelta(hours=1, minutes=30)

    async def reads(service: QueryService) -> dict[str, Any]:
        return {
            "history": await every_page(service, "history", series, DAY, DAY + 4 * HOUR, limit=7),
            "point": await service.official_value(series, empty_snap),
            "versions": await service.versions(series, empty_snap),
            "lineage": await every_page(service, "lineage", series, empty_snap, limit=2),
            "quality": await service.quality(series, start=DAY + HOUR, end=DAY + 3 * HOUR),
        }

    before = await reads(uncached_query_service(PostgresQueries(pool, pool)))
    assert before["point"] == b""  # 404: no value at that snap
    assert len(msgspec.json.decode(b"".join(before["history"][:1]))["items"]) == 7

    horizon = DAY + 4 * HOUR
    await drop_before(pool, horizon)
    reports: list[ScanReport] = []
    tiered = tiered_service(pool, lake, reports)
    after = await reads(tiered)
    assert after == before
    assert msgspec.json.decode(after["quality"])["count"] == 0
    whole = [r for r in reports if r.hours == 4]
    assert whole
    assert all(r.manifests == 2 for r in whole)
    point = [r for r in reports if r.start == empty_snap]
    assert point
    assert all((r.hours, r.manifests, r.rows) == (1, 0, 0) for r in point)
