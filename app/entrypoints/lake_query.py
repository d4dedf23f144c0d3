"""`qis lake query`: the query API's reads answered from the data lake, as of any time.

The answer is what the HTTP API answers for the same series, range and `as_of` (the same
`QueryService` over the lake's `QueryStore`), as JSON (the API's body) or CSV. Without a
series, a range gives every series' official value per snap (a backtest's panel), as
CSV or JSON lines. `--explain` prints to stderr what each read scanned: hours, objects,
row groups, bytes, and DuckDB's plan with the filters pushed into the scan.

`register(lake_sub)` adds `query` to the `qis lake` sub-parsers.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from app.domain.bounds import MAX_INT32, is_valid_series_id, timestamp_problem
from app.domain.observation import SERIES_ID_PATTERN, AwareDatetime
from app.domain.reading import GRANULARITY_STEP, MAX_PAGE
from app.entrypoints.unreachable import EXIT_UNREACHABLE

if TYPE_CHECKING:
    from app.adapters.lake_reader import LakeQueries, ScanReport
    from app.services.query import QueryService
    from app.settings import Settings

EXIT_ABSENT = 1
EXIT_USAGE = 2


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


class UsageError(ValueError):
    """A query this command cannot run as given; the message is the line to print."""


def _instant(text: str, name: str) -> datetime:
    try:
        value = msgspec.convert(text, AwareDatetime)
    except msgspec.ValidationError as exc:
        raise UsageError(f"--{name}: {exc} (e.g. 2026-01-15T14:00:00Z)") from None
    problem = timestamp_problem(value)
    if problem:
        raise UsageError(f"--{name}: {problem}")
    return value


def register(lake: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    query = lake.add_parser(
        "query",
        help="history and point reads as of any time, from the lake (the API's answers)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    query.add_argument("series", nargs="?", help="series id; none: every series (a panel)")
    query.add_argument("--snap", help="one snap: its latest version (or --as-of, --version)")
    query.add_argument("--from", dest="start", help="first snap of a range, inclusive")
    query.add_argument("--to", dest="end", help="end of the range, exclusive")
    query.add_argument("--as-of", help="as known at this time (the highest recorded_at <= it)")
    query.add_argument("--version", type=int, help="with --snap: that version")
    what = query.add_mutually_exclusive_group()
    what.add_argument("--versions", action="store_true", help="with --snap: every version")
    what.add_argument(
        "--observations", action="store_true", help="with --snap: its observations (lineage)"
    )
    what.add_argument(
        "--quality", action="store_true", help="with --from/--to: the quality summary"
    )
    query.add_argument(
        "--granularity", choices=list(GRANULARITY_STEP), default="raw", help="history buckets"
    )
    query.add_argument("--limit", type=int, default=100, help=f"page size, 1 to {MAX_PAGE}")
    query.add_argument("--cursor", help="next_cursor of the previous page")
    query.add_argument(
        "--all", action="store_true", help="follow next_cursor: every page as one answer"
    )
    query.add_argument("--format", choices=["json", "csv"], default="json")
    query.add_argument(
        "--explain", action="store_true", help="print what each read scanned (stderr)"
    )
    query.add_argument("--bucket", default="", help="the lake's bucket (default QIS_LAKE__BUCKET)")
    query.set_defaults(run=cmd_lake_query)


def cmd_lake_query(settings: Settings, args: argparse.Namespace) -> int:
    from app.adapters.lake_reader import LakeFiles, LakeQueries, LakeReader
    from app.adapters.s3_lake import LAKE_ERRORS
    from app.services.lake_query import uncached_query_service

    reports: list[ScanReport] = []
    try:
        files = LakeFiles.from_settings(settings.lake, args.bucket)
        store = LakeQueries(LakeReader(files, explain=args.explain), reports.append)
        if args.series is None:
            code = _panel(store, args, sys.stdout)
        else:
            code = asyncio.run(_read(uncached_query_service(store), args, sys.stdout))
    except UsageError as exc:
        _err(f"qis lake query: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        return _unreachable(settings, exc)
    except LAKE_ERRORS as exc:
        return _unreachable(settings, exc)
    finally:
        for report in reports if args.explain else []:
            _err(report.text())
    return code


def _unreachable(settings: Settings, exc: Exception) -> int:
    where = settings.lake.endpoint_url or "the AWS endpoint"
    _err(f"qis: cannot read the lake at {where} ({exc})")
    return EXIT_UNREACHABLE


async def _read(service: QueryService, args: argparse.Namespace, out: TextIO) -> int:
    from app.services.cache import ABSENT
    from app.services.query import InvalidQuery

    series = args.series
    if not is_valid_series_id(series):
        raise UsageError(f"the series id must match {SERIES_ID_PATTERN}")
    as_of = None if args.as_of is None else _instant(args.as_of, "as-of")
    if not 1 <= args.limit <= MAX_PAGE:
        raise UsageError(f"--limit is 1 to {MAX_PAGE}")
    try:
        if args.snap is not None:
            snap = _instant(args.snap, "snap")
            if args.observations:
                body = await _pages(service.lineage, args, series, snap, limit=args.limit)
            elif args.versions:
                body = await service.versions(series, snap)
            else:
                if args.version is not None and as_of is not None:
                    raise UsageError("--version and --as-of exclude each other")
                if args.version is not None and not 1 <= args.version <= MAX_INT32:
                    raise UsageError(f"--version is 1 to {MAX_INT32}")
                body = await service.official_value(series, snap, version=args.version, as_of=as_of)
        elif args.start is not None and args.end is not None:
            start, end = _instant(args.start, "from"), _instant(args.end, "to")
            if args.quality:
                body = await service.quality(series, start=start, end=end)
            else:
                body = await _pages(
                    service.history,
                    args,
                    series,
                    start,
                    end,
                    granularity=args.granularity,
                    as_of=as_of,
                    limit=args.limit,
                )
        else:
            raise UsageError("give --snap, or --from and --to")
    except InvalidQuery as exc:
        raise UsageError(f"{exc.parameter}: {exc}") from None
    if body == ABSENT:
        _err(f"qis lake query: nothing for {series} (the API answers 404)")
        return EXIT_ABSENT
    _write(body, args.format, out)
    return 0


async def _pages(read: Any, args: argparse.Namespace, *positional: Any, **named: Any) -> bytes:
    """One page (at `--cursor`), or with `--all` every page as one `{"items": ...}`."""
    if not args.all:
        body: bytes = await read(*positional, cursor=args.cursor, **named)
        return body
    items: list[Any] = []
    cursor = args.cursor
    while True:
        page = msgspec.json.decode(await read(*positional, cursor=cursor, **named))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return msgspec.json.encode({"items": items, "next_cursor": None})


def _flat(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, dict):
            row |= _flat(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            row[prefix + key] = msgspec.json.encode(value).decode()
        else:
            row[prefix + key] = value
    return row


def _write(body: bytes, form: str, out: TextIO) -> None:
    if form == "json":
        out.write(body.decode() + "\n")
        return
    document = msgspec.json.decode(body)
    items = document.get("items", [document])
    _csv([_flat(i) for i in items], out)


def _csv(rows: list[dict[str, Any]], out: TextIO) -> None:
    writer = csv.DictWriter(out, list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _panel(store: LakeQueries, args: argparse.Namespace, out: TextIO) -> int:
    if args.start is None or args.end is None:
        raise UsageError("without a series, give --from and --to (every series' values)")
    start, end = _instant(args.start, "from"), _instant(args.end, "to")
    if start >= end:
        raise UsageError("--to must be after --from")
    as_of = None if args.as_of is None else _instant(args.as_of, "as-of")
    rows = store.panel(start, end, as_of=as_of).to_pylist()
    if args.format == "csv":
        _csv([_flat(r) for r in rows], out)
    else:
        for row in rows:
            out.write(msgspec.json.encode(row).decode() + "\n")
    return 0
