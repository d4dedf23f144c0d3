"""`qis ingest` reading: CSV, JSON lines and Parquet rows, judged by the api's rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.entrypoints.ingest_files import (
    MAX_LINE_BYTES,
    FileProblem,
    Row,
    detect_format,
    fingerprint,
    rows,
    total,
)

HEADER = "reference_data_id,source,snap,value,observed_at"
GOOD = "T.A,bbg,2026-01-15T14:00:00Z,1.5,2026-01-15T14:00:01Z"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def summary(found: list[Row]) -> list[tuple[int, str | None]]:
    return [(row.line, row.problem) for row in found]


def test_csv_rows_with_their_lines_blank_lines_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", f"{HEADER}\n{GOOD}\n\n{GOOD.replace('bbg', 'rfn')}\n")
    found = list(rows(path, "csv"))
    assert summary(found) == [(2, None), (4, None)]
    first = found[0].observation
    assert first is not None
    assert (first.reference_data_id, first.source, first.value) == ("T.A", "bbg", 1.5)
    assert first.snap == datetime(2026, 1, 15, 14, tzinfo=UTC)
    assert found[1].raw == GOOD.replace("bbg", "rfn")
    assert found[-1].resume == path.stat().st_size


def test_csv_bad_rows_say_why_with_the_api_words(tmp_path: Path) -> None:
    lines = [
        HEADER,
        GOOD.replace("1.5", "abc"),
        GOOD.replace("14:00:00Z", "14:00:00"),
        GOOD.replace("T.A", "bad id"),
        GOOD + ",extra",
        GOOD.replace("2026-01-15T14:00:01Z", "1969-12-31T23:59:59Z"),
        GOOD.replace("1.5", "nan"),
    ]
    found = list(rows(write(tmp_path, "b.csv", "\n".join(lines) + "\n"), "csv"))
    assert [row.observation for row in found] == [None] * 6
    assert summary(found) == [
        (2, "value: Expected `float`, got `str`"),
        (3, "snap: Expected `datetime` with a timezone component"),
        (4, "reference_data_id: Expected `str` matching regex '^[A-Z0-9][A-Z0-9._:-]{0,63}$'"),
        (5, "CSV: 6 fields, the header has 5"),
        (
            6,
            "observed_at: must be from 1970-01-01T00:00:00Z inclusive "
            "to 2200-01-01T00:00:00Z exclusive",
        ),
        (7, "value: Expected `float` > -1.7976931348623157e+308"),
    ]
    assert found[0].raw == lines[1]


def test_csv_byte_order_mark_quoted_fields_and_multiline_records(tmp_path: Path) -> None:
    text = (
        HEADER + ",attributes\r\n"
        '"T.A","src, with comma",2026-01-15T14:00:00Z,2,2026-01-15T14:00:00Z,'
        '"{""venue"": ""XLON"", ""size"": 3}"\r\n'
        'T.B,"two\nlines",2026-01-15T14:00:00Z,3,2026-01-15T14:00:00Z,\r\n'
        "T.C,bbg,2026-01-15T14:00:00Z,4,2026-01-15T14:00:00Z,{not json\r\n"
    )
    path = write(tmp_path, "c.csv", b"\xef\xbb\xbf" + text.encode())
    found = list(rows(path, "csv"))
    assert [row.line for row in found] == [2, 3, 5]
    a, b, c = (row.observation for row in found)
    assert a is not None
    assert b is not None
    assert a.source == "src, with comma"
    assert a.attributes == {"venue": "XLON", "size": 3.0}
    assert b.source == "two\nlines"
    assert b.attributes is None  # an empty optional cell is no value
    assert c is None
    assert (found[2].problem or "").startswith("attributes: not a JSON object")
    assert found[1].raw == 'T.B,"two\nlines",2026-01-15T14:00:00Z,3,2026-01-15T14:00:00Z,'


def test_csv_nul_and_unclosed_quote_are_rejected_not_raised(tmp_path: Path) -> None:
    text = f'{HEADER}\nT.A,b\x00b,2026-01-15T14:00:00Z,1,2026-01-15T14:00:00Z\n{GOOD}\nT.A,"open\n'
    found = list(rows(write(tmp_path, "d.csv", text), "csv"))
    assert summary(found) == [
        (2, "source: must not contain a NUL character (U+0000)"),
        (3, None),
        (4, "CSV: unexpected end of data"),
    ]


def test_csv_invalid_utf8_is_a_rejected_row(tmp_path: Path) -> None:
    text = f"{HEADER}\n".encode() + b"T.A,b\xff,2026-01-15T14:00:00Z,1,2026-01-15T14:00:00Z\n"
    (row,) = rows(write(tmp_path, "e.csv", text), "csv")
    assert row.problem == "source: must be valid Unicode (no lone surrogate)"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "no header row"),
        ("reference_data_id,source,snap,value", "missing column(s) observed_at"),
        (HEADER + ",venue", "unknown column(s) venue"),
        (HEADER + ",source", "repeated column(s) source"),
    ],
)
def test_a_bad_csv_header_is_a_file_problem(tmp_path: Path, header: str, message: str) -> None:
    path = write(tmp_path, "h.csv", header + ("\n" if header else ""))
    with pytest.raises(FileProblem, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(rows(path, "csv"))


def test_csv_resumes_from_a_rows_position(tmp_path: Path) -> None:
    body = "".join(GOOD.replace("1.5", str(n)) + "\n" for n in range(5))
    path = write(tmp_path, "r.csv", f"{HEADER}\n{body}")
    every = list(rows(path, "csv"))
    again = list(rows(path, "csv", every[1].line, every[1].resume))
    assert [(r.line, r.raw) for r in again] == [(r.line, r.raw) for r in every[2:]]
    assert [r.observation.value for r in again if r.observation] == [2.0, 3.0, 4.0]


def test_jsonl_rows_as_in_a_request_body(tmp_path: Path) -> None:
    good = {
        "reference_data_id": "T.A",
        "source": "bbg",
        "snap": "2026-01-15T15:00:00+01:00",
        "value": 1,
        "observed_at": "2026-01-15T14:00:00Z",
        "attributes": {"venue": "XLON"},
    }
    lines = [
        json.dumps(good),
        "   ",
        json.dumps({**good, "value": "1.5"}),
        "{not json",
        json.dumps({**good, "extra": 1}),
        json.dumps({**good, "source": "a\u0000b"}),
    ]
    path = write(tmp_path, "a.jsonl", "\ufeff" + "\n".join(lines) + "\n")
    found = list(rows(path, "jsonl"))
    assert [row.line for row in found] == [1, 3, 4, 5, 6]
    first = found[0].observation
    assert first is not None
    assert first.snap == datetime(2026, 1, 15, 14, tzinfo=UTC)
    assert first.value == 1.0
    assert [row.problem for row in found[1:]] == [
        "value: Expected `float`, got `str`",
        "not valid JSON: JSON is malformed: object keys must be strings (byte 1)",
        "extra: unknown field",
        "source: must not contain a NUL character (U+0000)",
    ]
    resumed = list(rows(path, "jsonl", found[1].line, found[1].resume))
    assert [row.line for row in resumed] == [4, 5, 6]


def parquet(path: Path, columns: dict[str, pa.Array], group_rows: int = 2) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=group_rows)
    return path


def test_parquet_rows_read_a_row_group_at_a_time(tmp_path: Path) -> None:
    utc = pa.timestamp("us", tz="UTC")
    snap = datetime(2026, 1, 15, 14, tzinfo=UTC)
    path = parquet(
        tmp_path / "a.parquet",
        {
            "reference_data_id": pa.array(["T.A", "T.B", "bad id", "T.D", "T.E"]),
            "source": pa.array(["bbg"] * 5),
            "snap": pa.array([snap] * 5, type=utc),
            "value": pa.array([1.0, 2.0, 3.0, None, 5.0]),
            "observed_at": pa.array([snap] * 5, type=utc),
            "attributes": pa.array(['{"venue": "XLON"}', None, None, None, "[1]"]),
        },
    )
    assert total(path, "parquet") == (5, "rows")
    found = list(rows(path, "parquet"))
    assert [row.line for row in found] == [1, 2, 3, 4, 5]
    assert [row.resume for row in found] == [1, 2, 3, 4, 5]
    a, b = found[0].observation, found[1].observation
    assert a is not None
    assert b is not None
    assert a.snap == snap
    assert a.attributes == {"venue": "XLON"}
    assert b.attributes is None
    assert [row.problem for row in found[2:]] == [
        "reference_data_id: Expected `str` matching regex '^[A-Z0-9][A-Z0-9._:-]{0,63}$'",
        "value: Expected `float`, got `null`",
        "attributes: Expected `object | null`, got `array`",
    ]
    assert json.loads(found[2].raw)["reference_data_id"] == "bad id"
    # Resuming inside the second row group skips the first unread.
    assert [row.line for row in rows(path, "parquet", 3, 3)] == [4, 5]


def test_parquet_naive_timestamps_are_rejected(tmp_path: Path) -> None:
    naive = datetime(2026, 1, 15, 14)
    path = parquet(
        tmp_path / "n.parquet",
        {
            "reference_data_id": pa.array(["T.A"]),
            "source": pa.array(["bbg"]),
            "snap": pa.array([naive], type=pa.timestamp("us")),
            "value": pa.array([1.0]),
            "observed_at": pa.array(["2026-01-15T14:00:00Z"]),
        },
    )
    (row,) = rows(path, "parquet")
    assert row.problem == "snap: Expected `datetime` with a timezone component"


def test_parquet_with_unknown_columns_or_not_parquet_is_a_file_problem(tmp_path: Path) -> None:
    path = parquet(tmp_path / "u.parquet", {"reference_data_id": pa.array(["T.A"])})
    with pytest.raises(FileProblem, match="missing"):
        list(rows(path, "parquet"))
    with pytest.raises(FileProblem, match="not a readable Parquet file"):
        list(rows(write(tmp_path, "x.parquet", "not parquet"), "parquet"))


def test_format_from_the_extension_or_given(tmp_path: Path) -> None:
    assert detect_format(Path("a.CSV"), None) == "csv"
    assert detect_format(Path("a.ndjson"), None) == "jsonl"
    assert detect_format(Path("a.pq"), None) == "parquet"
    assert detect_format(Path("a.txt"), "jsonl") == "jsonl"
    with pytest.raises(FileProblem, match="--format"):
        detect_format(Path("a.txt"), None)


def test_fingerprint_changes_with_the_content(tmp_path: Path) -> None:
    path = write(tmp_path, "f.csv", f"{HEADER}\n{GOOD}\n")
    before = fingerprint(path)
    assert before == fingerprint(path)
    path.write_text(f"{HEADER}\n{GOOD.replace('bbg', 'xxx')}\n")
    after = fingerprint(path)
    assert after["size"] == before["size"]
    assert after["head_sha256"] != before["head_sha256"]


def test_an_overlong_line_is_rejected_without_being_held(tmp_path: Path) -> None:
    huge = "T.A,bbg," + "x" * (3 * MAX_LINE_BYTES)
    path = write(tmp_path, "o.csv", f"{HEADER}\n{GOOD}\n{huge}\n{GOOD}\n")
    found = list(rows(path, "csv"))
    assert summary(found) == [
        (2, None),
        (3, f"line longer than {MAX_LINE_BYTES} bytes"),
        (4, None),
    ]
    assert found[1].raw == huge[:200] + "..."
    assert found[2].resume == path.stat().st_size
    jsonl = write(tmp_path, "o.jsonl", '{"a": "' + "x" * MAX_LINE_BYTES + '"}\n\n')
    assert summary(list(rows(jsonl, "jsonl"))) == [(1, f"line longer than {MAX_LINE_BYTES} bytes")]


def test_a_csv_field_above_the_field_limit_is_a_rejected_row(tmp_path: Path) -> None:
    big = f'T.A,"{"y" * 200_000}",2026-01-15T14:00:00Z,1,2026-01-15T14:00:00Z'
    found = list(rows(write(tmp_path, "f.csv", f"{HEADER}\n{big}\n{GOOD}\n"), "csv"))
    assert [row.line for row in found] == [2, 3]
    assert (found[0].problem or "").startswith("CSV: field larger than field limit")
    assert found[1].problem is None
