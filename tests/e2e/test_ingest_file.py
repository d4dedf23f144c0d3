"""`qis ingest FILE` against the running api and worker: values stored once, rejects
listed by line, and an interrupted run (SIGINT mid-run) resumed without loss or double.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import unique_series
from tests.e2e.conftest import ADMIN_CLIENT, QIS, Service, token_provider
from tests.e2e.ingestion_helpers import wait_for_count

pytestmark = pytest.mark.e2e

BASE = datetime(2026, 1, 15, 14, tzinfo=UTC)
SOURCES = 50


def stamp(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def item(series: str, i: int) -> dict[str, Any]:
    """Row i: source `s<i % 50>`, snap one minute per 50 rows, value i / 4."""
    snap = BASE + timedelta(minutes=i // SOURCES)
    return {
        "reference_data_id": series,
        "source": f"s{i % SOURCES}",
        "snap": stamp(snap),
        "value": i / 4,
        "observed_at": stamp(snap + timedelta(seconds=1)),
    }


def write_csv(path: Path, series: str, count: int, bad: dict[int, str] | None = None) -> Path:
    """`count` rows; row i replaced by the text in `bad` (as is) where given."""
    bad = bad or {}
    with path.open("w") as f:
        f.write("reference_data_id,source,snap,value,observed_at\n")
        for i in range(count):
            if i in bad:
                f.write(bad[i] + "\n")
                continue
            r = item(series, i)
            f.write(f"{series},{r['source']},{r['snap']},{r['value']},{r['observed_at']}\n")
    return path


def ingest(path: Path, api: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
    env["QIS_CLIENT__URL"] = api
    # a client-credentials token of the e2e issuer, as an operator would pass one
    env["QIS_CLIENT__TOKEN"] = token_provider(ADMIN_CLIENT, "qis/ingest")().access_token
    return subprocess.Popen(
        [QIS, "ingest", str(path), "--output", "json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    out, err = process.communicate(timeout=timeout)
    assert out.strip(), f"no summary; stderr:\n{err}"
    return process.returncode, json.loads(out.strip().splitlines()[-1]), err


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def stored(pool: asyncpg.Pool, series: str) -> dict[tuple[str, str], float]:
    rows = await pool.fetch(
        "SELECT source, snap, value FROM observations WHERE reference_data_id = $1", series
    )
    return {(r["source"], stamp(r["snap"])): float(r["value"]) for r in rows}


def expected(series: str, indexes: range | list[int]) -> dict[tuple[str, str], float]:
    return {(item(series, i)["source"], item(series, i)["snap"]): i / 4 for i in indexes}


async def test_a_csv_file_is_stored_and_its_bad_rows_listed_by_line(
    api: str, worker: Service, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    series = unique_series("ING")
    good = write_csv(tmp_path / "x.csv", series, 1, {})  # one row, for its text
    valid_row = good.read_text().splitlines()[1]
    bad = {
        10: valid_row.replace(series, "not a series"),
        20: f"{series},s20,2026-01-15T14:00:00,1.0,2026-01-15T14:00:01Z",
        30: f"{series},s30,2026-01-15T14:00:00Z,abc,2026-01-15T14:00:01Z",
        40: f'{series},"s4\x000",2026-01-15T14:00:00Z,1.0,2026-01-15T14:00:01Z',
    }
    path = write_csv(tmp_path / "prices.csv", series, 1200, bad)

    code, summary, err = finish(ingest(path, api, "--batch-size", "250"))

    assert code == 1, err
    assert {k: summary[k] for k in ("rows", "accepted", "duplicates", "rejected", "complete")} == {
        "rows": 1200,
        "accepted": 1196,
        "duplicates": 0,
        "rejected": 4,
        "complete": True,
    }
    rejects = read_json_lines(Path(summary["rejects_file"]))
    assert [(r["line"], r["row"]) for r in rejects] == [(i + 2, bad[i]) for i in sorted(bad)]
    assert [r["reason"].split(":")[0] for r in rejects] == [
        "reference_data_id",
        "snap",
        "value",
        "source",
    ]
    valid = [i for i in range(1200) if i not in bad]
    assert await wait_for_count(pool, series, len(valid), settle=1.0) == len(valid)
    assert await stored(pool, series) == expected(series, valid)
    assert json.loads(err.splitlines()[-1])["state"] == "done"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_json_lines_and_parquet_files_are_stored(
    fmt: str, api: str, worker: Service, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    series = unique_series("ING")
    items = [item(series, i) for i in range(300)]
    if fmt == "jsonl":
        path = tmp_path / "prices.jsonl"
        path.write_text("".join(json.dumps(i) + "\n" for i in items))
    else:
        path = tmp_path / "prices.parquet"
        utc = pa.timestamp("us", tz="UTC")
        table = pa.table(
            {
                "reference_data_id": [i["reference_data_id"] for i in items],
                "source": [i["source"] for i in items],
                "snap": pa.array([BASE + timedelta(minutes=n // SOURCES) for n in range(300)], utc),
                "value": [i["value"] for i in items],
                "observed_at": [i["observed_at"] for i in items],
            }
        )
        pq.write_table(table, path, row_group_size=128)

    code, summary, err = finish(ingest(path, api, "--batch-size", "100"))

    assert code == 0, err
    assert (summary["rows"], summary["accepted"], summary["rejected"]) == (300, 300, 0)
    assert summary["rejects_file"] is None
    assert not path.with_name(path.name + ".rejects.jsonl").exists()
    assert await wait_for_count(pool, series, 300, settle=1.0) == 300
    assert await stored(pool, series) == expected(series, range(300))


def interrupt_mid_run(process: subprocess.Popen[str], after_rows: int, signals: int) -> str:
    """Read JSON progress lines until `after_rows` rows are counted, then SIGINT."""
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:  # bounded: the process ends, closing the pipe
        seen.append(line)
        if line.startswith("{") and json.loads(line).get("done", 0) >= after_rows:
            for _ in range(signals):
                process.send_signal(signal.SIGINT)
            break
    return "".join(seen)


@pytest.mark.parametrize("signals", [1, 2], ids=["finish-in-flight", "abandon-in-flight"])
async def test_an_interrupted_run_resumes_and_stores_every_row_once(
    signals: int, api: str, worker: Service, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    series = unique_series("ING")
    count = 30_000
    path = write_csv(tmp_path / "big.csv", series, count)
    options = ("--batch-size", "500", "--concurrency", "3", "--progress-every", "0")

    first = ingest(path, api, *options)
    head = interrupt_mid_run(first, after_rows=3000, signals=signals)
    code, summary, err = finish(first)

    assert code == 130, head + err
    assert summary["interrupted"] is True
    assert summary["complete"] is False
    assert 3000 <= summary["rows"] < count
    assert summary["rows"] == summary["accepted"]
    assert summary["last_line"] == summary["rows"] + 1
    assert json.loads(err.strip().splitlines()[-1])["state"] == "interrupted"
    checkpoint = json.loads(path.with_name("big.csv.qis-ingest.checkpoint").read_text())
    assert checkpoint["line"] == summary["last_line"]
    if signals == 1:  # every request in flight was answered and counted
        assert checkpoint["sent_through"] == checkpoint["line"]
    else:
        assert checkpoint["sent_through"] >= checkpoint["line"]
    resent = checkpoint["sent_through"] - checkpoint["line"]

    code, resumed, err = finish(ingest(path, api, *options))

    assert code == 0, err
    assert resumed["resumed_after_line"] == summary["last_line"]
    assert resumed["run_rows"] == count - summary["rows"]
    assert resumed["rows"] == count
    assert resumed["accepted"] + resumed["duplicates"] + resumed["rejected"] == count
    assert resumed["duplicates"] == resent
    assert resumed["rejected"] == 0
    assert await wait_for_count(pool, series, count, timeout=120, settle=2.0) == count
    assert await stored(pool, series) == expected(series, range(count))
    distinct = await pool.fetchval(
        "SELECT count(DISTINCT observation_id) FROM observations WHERE reference_data_id = $1",
        series,
    )
    assert distinct == count


def test_an_unreachable_api_is_one_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", "ING.X", 3)
    process = ingest(path, "http://127.0.0.1:9", "--output", "text")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert out == ""
    assert err.strip() == "qis: cannot reach the api at http://127.0.0.1:9 (connection refused)"
    assert not path.with_name("a.csv.qis-ingest.checkpoint").exists()
