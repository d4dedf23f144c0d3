"""Rows of an observations file for `qis ingest`: CSV, JSON lines or Parquet, streamed.

Every data row comes out as a `Row`: its line number, the position to resume after it,
its raw text, and either the decoded observation or why it cannot be sent. A row is
judged by the server's own rules (the api's `SubmittedObservation` struct and the bounds
of app/domain/bounds.py), so what the server would refuse is refused here, with the same
words, without a request.

- CSV: a header row naming the columns, UTF-8 (a byte-order mark is skipped), quoted
  fields may hold commas and line breaks. Columns: `reference_data_id`, `source`, `snap`,
  `value`, `observed_at` (required), `observation_id` and `attributes` (a JSON object),
  optional; an empty cell of an optional column is no value. Blank lines are skipped.
  The line of a row is the line where its record starts.
- JSON lines: one observation object per line, exactly as in a request body. Blank lines
  are skipped.
- Parquet: the same columns; timestamps as timestamp columns with a time zone (or RFC
  3339 strings), `attributes` as a JSON string or a struct/map column. Read a row group
  at a time; the "line" of a row is its 1-based row number.

Memory stays bounded whatever the file's size: a line (CSV fields at most
`csv.field_size_limit()`), or one Parquet record batch, at a time.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import msgspec

from app.api.problems import item_from_msgspec
from app.domain.bounds import in_bounds, submitted_problems
from app.domain.observation import SubmittedObservation

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
REQUIRED = ("reference_data_id", "source", "snap", "value", "observed_at")
OPTIONAL = ("observation_id", "attributes")
COLUMNS = REQUIRED + OPTIONAL
BOM = b"\xef\xbb\xbf"
PARQUET_BATCH_ROWS = 10_000
_HEAD_BYTES = 64 * 1024
# No observation comes near this (the api's body limit is 2 MiB for 5,000 of them).
MAX_LINE_BYTES = 1024 * 1024
_OVERLONG_SHOWN = 200
_OVERLONG = f"line longer than {MAX_LINE_BYTES} bytes"

_decode_item = msgspec.json.Decoder(SubmittedObservation)


class FileProblem(Exception):
    """The file as a whole cannot be read as the format (a bad header, not Parquet...)."""


class Row(NamedTuple):
    """One data row: `observation` when it can be sent, else `problem` says why not.

    `resume` is where reading resumes after this row: a byte offset (CSV, JSON lines) or
    a row count (Parquet).
    """

    line: int
    resume: int
    raw: str
    observation: SubmittedObservation | None
    problem: str | None = None


def detect_format(path: Path, given: str | None) -> Format:
    """`given`, or the format of the file's extension; FileProblem when neither says."""
    if given:
        if given not in FORMATS:
            raise FileProblem(f"unknown format {given!r}: one of {', '.join(FORMATS)}")
        return given
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise FileProblem(
            f"cannot tell the format of {path.name} from its extension "
            f"({', '.join(EXTENSIONS)}): give --format"
        )
    return found


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies this version of the file: size, mtime and a hash of its head."""
    stat = path.stat()
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(_HEAD_BYTES)).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": head}


def _reason(loc: list[str | int], msg: str) -> str:
    where = ".".join(str(part) for part in loc)
    return f"{where}: {msg}" if where else msg


def judge(
    fields: dict[str, Any] | bytes, raw: str
) -> tuple[SubmittedObservation | None, str | None]:
    """Decode one observation (a JSON text, or a dict of column values) as the api does,
    then check the bounds: the observation, or the reasons it would be refused.

    `raw` is the row's text: the text bounds (no NUL, no lone surrogate) are checked only
    when it holds a NUL, an escape or a non-ASCII character (as the api does)."""
    try:
        if isinstance(fields, dict):
            observation = msgspec.convert(fields, SubmittedObservation, strict=False)
        else:
            observation = _decode_item.decode(fields)
    except msgspec.ValidationError as exc:
        item = item_from_msgspec(exc, [])
        return None, _reason(item.loc, item.msg)
    except msgspec.DecodeError as exc:
        return None, f"not valid JSON: {exc}"
    text = not raw.isascii() or "\x00" in raw or "\\" in raw
    if not text and in_bounds((observation,)):
        return observation, None
    problems = submitted_problems(observation, text=text)
    if problems:
        return None, "; ".join(_reason(list(p.loc), p.msg) for p in problems)
    return observation, None


def rows(path: Path, fmt: Format, start_line: int = 0, start: int = 0) -> Iterator[Row]:
    """The data rows of `path`, from the position `start` (after line `start_line`)."""
    if fmt == "csv":
        return _csv_rows(path, start_line, start)
    if fmt == "jsonl":
        return _jsonl_rows(path, start_line, start)
    return _parquet_rows(path, start)


def total(path: Path, fmt: Format) -> tuple[int, str]:
    """How far a complete read goes, and in what: bytes, or rows for Parquet."""
    if fmt == "parquet":
        return _parquet_file(path).metadata.num_rows, "rows"
    return path.stat().st_size, "bytes"


# --- text files ------------------------------------------------------------------------


class _Lines:
    """The lines of a binary file, decoded, counting line numbers and byte offsets.

    A line longer than `MAX_LINE_BYTES` is read past in pieces, never held: it comes out
    as an empty line, with `overlong` set to its start (the reader rejects its record).
    """

    def __init__(self, f: IO[bytes], line: int, offset: int) -> None:
        self._f, self.line, self.offset = f, line, offset
        self.record: list[str] = []  # the lines of the record being read
        self.overlong: str | None = None

    def __iter__(self) -> Iterator[str]:
        readline = self._f.readline
        while raw := readline(MAX_LINE_BYTES):
            size = len(raw)
            if size == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                self.overlong = raw[:_OVERLONG_SHOWN].decode("utf-8", "replace") + "..."
                while (more := readline(MAX_LINE_BYTES)) and not more.endswith(b"\n"):
                    size += len(more)
                size += len(more)
                raw = b"\n"
            elif self.offset == 0 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            self.offset += size
            self.line += 1
            # Invalid UTF-8 is kept as lone surrogates: the text checks refuse them.
            text = raw.decode("utf-8", "surrogateescape")
            self.record.append(text)
            yield text


def _record_text(lines: list[str]) -> str:
    return "".join(lines).rstrip("\r\n")


def _csv_rows(path: Path, start_line: int, start: int) -> Iterator[Row]:
    with path.open("rb") as f:
        header_lines = _Lines(f, 0, 0)
        reader = csv.reader(header_lines, strict=True)
        header = _csv_header(reader)
        if start:
            f.seek(start)
            lines = _Lines(f, start_line, start)
        else:
            lines = header_lines
        lines.record = []
        reader = csv.reader(lines, strict=True)
        width = len(header)
        while True:
            first = lines.line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                text = _record_text(lines.record)
                lines.record, lines.overlong = [], None
                yield Row(first, lines.offset, text, None, f"CSV: {exc}")
                continue
            text = _record_text(lines.record)
            lines.record = []
            if lines.overlong is not None:
                yield Row(first, lines.offset, lines.overlong, None, _OVERLONG)
                lines.overlong = None
                continue
            if not cells:
                continue  # a blank line
            if len(cells) != width:
                count = f"CSV: {len(cells)} fields, the header has {width}"
                yield Row(first, lines.offset, text, None, count)
                continue
            fields: dict[str, Any] = {}
            for name, cell in zip(header, cells, strict=True):
                if cell == "" and name in OPTIONAL:
                    continue
                fields[name] = cell
            observation, problem = _csv_observation(fields, text)
            yield Row(first, lines.offset, text, observation, problem)


def _csv_header(reader: Iterator[list[str]]) -> list[str]:
    try:
        header = next(reader)
        while not header:
            header = next(reader)
    except StopIteration:
        raise FileProblem("no header row: the file is empty") from None
    except csv.Error as exc:
        raise FileProblem(f"header row: {exc}") from None
    names = [name.strip() for name in header]
    unknown = [name for name in names if name not in COLUMNS]
    missing = [name for name in REQUIRED if name not in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if unknown or missing or repeated:
        parts = [
            f"{what} {', '.join(which)}"
            for what, which in (
                ("unknown column(s)", unknown),
                ("missing column(s)", missing),
                ("repeated column(s)", repeated),
            )
            if names
        ]
        raise FileProblem(f"header row: {'; '.join(parts)} (the columns are {', '.join(COLUMNS)})")
    return names


def _csv_observation(
    fields: dict[str, Any], raw: str
) -> tuple[SubmittedObservation | None, str | None]:
    attributes = fields.get("attributes")
    if attributes is not None:
        try:
            fields["attributes"] = json.loads(attributes)
        except ValueError as exc:
            return None, f"attributes: not a JSON object ({exc})"
    return judge(fields, raw)


def _jsonl_rows(path: Path, start_line: int, start: int) -> Iterator[Row]:
    with path.open("rb") as f:
        if start:
            f.seek(start)
        lines = _Lines(f, start_line, start)
        for text in lines:
            lines.record = []
            if lines.overlong is not None:
                yield Row(lines.line, lines.offset, lines.overlong, None, _OVERLONG)
                lines.overlong = None
                continue
            if not text.strip():
                continue
            body = text.encode("utf-8", "surrogateescape")
            observation, problem = judge(body, text)
            yield Row(lines.line, lines.offset, text.rstrip("\r\n"), observation, problem)


# --- Parquet ---------------------------------------------------------------------------


def _parquet_file(path: Path) -> Any:
    import pyarrow.lib
    import pyarrow.parquet

    try:
        return pyarrow.parquet.ParquetFile(path)
    except (pyarrow.lib.ArrowException, OSError) as exc:
        raise FileProblem(f"not a readable Parquet file: {exc}") from None


def _parquet_rows(path: Path, start: int) -> Iterator[Row]:
    parquet = _parquet_file(path)
    names = list(parquet.schema_arrow.names)
    unknown = [name for name in names if name not in COLUMNS]
    missing = [name for name in REQUIRED if name not in names]
    if unknown or missing:
        raise FileProblem(
            f"Parquet columns: unknown {unknown or 'none'}, missing {missing or 'none'} "
            f"(the columns are {', '.join(COLUMNS)})"
        )
    # Skip the row groups read before; start inside the first one not wholly read.
    first_group, skipped = 0, 0
    metadata = parquet.metadata
    while first_group < metadata.num_row_groups:
        size = metadata.row_group(first_group).num_rows
        if skipped + size > start:
            break
        skipped += size
        first_group += 1
    groups = list(range(first_group, metadata.num_row_groups))
    number = skipped
    if not groups:
        return
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=groups):
        for values in batch.to_pylist():
            number += 1
            if number <= start:
                continue
            fields = {k: v for k, v in values.items() if not (v is None and k in OPTIONAL)}
            raw = _json_text(values)
            observation, problem = _parquet_observation(fields, raw)
            yield Row(number, number, raw, observation, problem)


def _parquet_observation(
    fields: dict[str, Any], raw: str
) -> tuple[SubmittedObservation | None, str | None]:
    attributes = fields.get("attributes")
    if isinstance(attributes, str):
        try:
            fields["attributes"] = json.loads(attributes)
        except ValueError as exc:
            return None, f"attributes: not a JSON object ({exc})"
    elif isinstance(attributes, list):  # a map column: [(key, value), ...]
        fields["attributes"] = dict(attributes)
    return judge(fields, raw)


def _json_text(values: dict[str, Any]) -> str:
    return json.dumps(values, default=str, ensure_ascii=False)


def reject_line(line: int, reason: str, raw: str) -> bytes:
    """One line of the rejects file: `{"line": N, "reason": ..., "row": raw text}`."""
    return (json.dumps({"line": line, "reason": reason, "row": raw}) + "\n").encode()


def default_path(path: Path, suffix: str) -> Path:
    """A file next to `path`: `data.csv` -> `data.csv<suffix>`."""
    return path.with_name(path.name + suffix)


def replace_atomically(path: Path, data: bytes) -> None:
    """Write `path` through a temporary file renamed over it (never half-written)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
