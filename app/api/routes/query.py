"""Query routes (docs/api.md, "Official values"): wire <-> `QueryService`.

Handlers answer with the bytes the service returns (the cached, already encoded body),
so a cache hit is served without decoding or encoding; the 200 schemas are declared
with `ResponseSpec` for the OpenAPI document.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import PathParameter, QueryParameter
from litestar.types import ASGIApp, Receive, Scope, Send

from app.api import examples
from app.api.auth import READ, requires
from app.api.openapi import ok, problems
from app.api.problems import ApiProblem, ProblemItem
from app.domain.bounds import (
    MAX_INT32,
    TIMESTAMP_PATTERN,
    TIMESTAMP_RULE,
    is_valid_series_id,
    timestamp_problem,
)
from app.domain.observation import SERIES_ID_PATTERN, AwareDatetime
from app.domain.reading import (
    MAX_PAGE,
    Granularity,
    HistoryPage,
    LineagePage,
    QualitySummary,
    VersionList,
)
from app.domain.versions import OfficialValue
from app.services.cache import ABSENT
from app.services.query import InvalidQuery, QueryService

DEFAULT_PAGE = 100
MAX_WINDOW = timedelta(days=366)
WINDOW_PATTERN = "^([1-9][0-9]{0,5})([smhd])$"
CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"
"""Cursors are base64url without padding (`QueryService.encode_cursor`)."""
_WINDOW = re.compile(WINDOW_PATTERN)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_INVALID = "invalid id, timestamp, parameter or cursor, or parameters that exclude each other"
_PROBLEMS = problems(s400=_INVALID)
_WITH_NOT_FOUND = problems(s400=_INVALID, s404="no version (yet) for that snap")

SeriesPath = Annotated[
    str,
    PathParameter(
        description="series id (an invalid one is a 400)",
        schema_extra={"pattern": SERIES_ID_PATTERN},
        examples=[Example(summary="a price", value=examples.SERIES)],
    ),
]
SnapPath = Annotated[
    str,
    PathParameter(
        description=f"the snap, e.g. 2026-01-15T14:00:00Z: {TIMESTAMP_RULE}",
        format="date-time",
        schema_extra={"pattern": TIMESTAMP_PATTERN},
        examples=[Example(summary="worked example 1", value=examples.SNAP_TEXT)],
    ),
]


def _at(description: str, example: str, name: str | None = None) -> QueryParameter:
    """A timestamp query parameter: a string the handler parses and bounds (bounds.py)."""
    return QueryParameter(
        name=name,
        description=f"{description}: {TIMESTAMP_RULE}",
        format="date-time",
        schema_extra={"pattern": TIMESTAMP_PATTERN},
        examples=[Example(value=example)],
    )


Limit = Annotated[
    int,
    QueryParameter(ge=1, le=MAX_PAGE, description=f"page size, 1 to {MAX_PAGE}"),
]
Cursor = Annotated[
    str | None,
    QueryParameter(
        description="`next_cursor` of the previous page (opaque; one this api returned)",
        max_length=512,
        schema_extra={"pattern": CURSOR_PATTERN},
    ),
]


class JsonBody:
    """A 200 with an already encoded JSON body, as a bare ASGI response.

    The body comes from the cache as bytes; a `Response` would be built, converted to an
    ASGI response and its headers re-parsed on every hit, which on the hot path costs as
    much as the cache lookup and the handler together. Middleware still sees the usual
    `http.response.start` / `http.response.body` messages (and may add headers).
    """

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(self.body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def _json(body: bytes) -> ASGIApp:
    return JsonBody(body)


def _series(reference_data_id: str) -> str:
    if not is_valid_series_id(reference_data_id):
        raise ApiProblem(
            400,
            f"reference_data_id must match {SERIES_ID_PATTERN}",
            errors=[ProblemItem(loc=["path", "reference_data_id"], msg="invalid series id")],
        )
    return reference_data_id


def _timestamp(text: str, source: str, name: str) -> datetime:
    try:
        ts = msgspec.convert(text, AwareDatetime)
    except msgspec.ValidationError as exc:
        problem = str(exc)
    else:
        bound = timestamp_problem(ts)
        if bound is None:
            return ts
        problem = bound
    raise ApiProblem(
        400,
        f"{name} must be an RFC 3339 timestamp with a time zone, e.g. 2026-01-15T14:00:00Z, "
        "from 1970-01-01T00:00:00Z inclusive to 2200-01-01T00:00:00Z exclusive",
        errors=[ProblemItem(loc=[source, name], msg=problem)],
    )


def _optional_timestamp(text: str | None, name: str) -> datetime | None:
    return None if text is None else _timestamp(text, "query", name)


def _invalid(exc: InvalidQuery) -> ApiProblem:
    return ApiProblem(
        400, str(exc), errors=[ProblemItem(loc=["query", exc.parameter], msg=str(exc))]
    )


def _window(text: str) -> timedelta:
    match = _WINDOW.match(text)
    window = timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]]) if match else timedelta(0)
    if not match or window > MAX_WINDOW:
        raise ApiProblem(
            400,
            "window is a count and a unit (s, m, h, d) of at most 366 days, e.g. 1h",
            errors=[ProblemItem(loc=["query", "window"], msg="invalid window")],
        )
    return window


@get(
    "/v1/reference-data/{reference_data_id:str}/official-values/{snap:str}",
    tags=["official values"],
    **requires(READ),
    summary="Official value of a snap: latest, a version, or as of a time",
    operation_id="getOfficialValue",
    responses={
        200: ok(OfficialValue, "the official value", "worked example 1", examples.OFFICIAL),
        **_WITH_NOT_FOUND,
    },
)
async def get_official_value(
    reference_data_id: SeriesPath,
    snap: SnapPath,
    query_service: NamedDependency[QueryService],
    version: Annotated[
        int | None,
        QueryParameter(ge=1, le=MAX_INT32, description="that version (exclusive with as_of)"),
    ] = None,
    as_of: Annotated[
        str | None,
        _at("the highest version recorded at or before this time", "2026-01-15T14:05:00Z"),
    ] = None,
) -> ASGIApp:
    """Latest version; `version=N` that version; `as_of=T` the highest recorded by T."""
    if version is not None and as_of is not None:
        raise ApiProblem(
            400,
            "version and as_of are mutually exclusive",
            errors=[ProblemItem(loc=["query", "as_of"], msg="not allowed with version")],
        )
    series = _series(reference_data_id)
    at = _timestamp(snap, "path", "snap")
    body = await query_service.official_value(
        series, at, version=version, as_of=_optional_timestamp(as_of, "as_of")
    )
    if body == ABSENT:
        raise ApiProblem(404, f"no official value of {series} at {snap} (for that version/time)")
    return _json(body)


@get(
    "/v1/reference-data/{reference_data_id:str}/official-values/{snap:str}/versions",
    tags=["official values"],
    **requires(READ),
    summary="Every version of a snap, oldest first",
    operation_id="getVersions",
    responses={
        200: ok(VersionList, "the versions", "one version", examples.VERSIONS),
        **_WITH_NOT_FOUND,
    },
)
async def get_versions(
    reference_data_id: SeriesPath,
    snap: SnapPath,
    query_service: NamedDependency[QueryService],
) -> ASGIApp:
    """Every version of one snap, oldest first; 404 when there is none."""
    series = _series(reference_data_id)
    body = await query_service.versions(series, _timestamp(snap, "path", "snap"))
    if body == ABSENT:
        raise ApiProblem(404, f"no official value of {series} at {snap}")
    return _json(body)


@get(
    "/v1/reference-data/{reference_data_id:str}/official-values",
    tags=["official values"],
    **requires(READ),
    summary="History of official values, optionally bucketed and as of a time",
    operation_id="getHistory",
    responses={
        200: ok(HistoryPage, "one page of history", "the last page", examples.HISTORY),
        **_PROBLEMS,
    },
)
async def get_history(
    reference_data_id: SeriesPath,
    query_service: NamedDependency[QueryService],
    from_: Annotated[str, _at("first snap, inclusive", "2026-01-15T00:00:00Z", "from")],
    to: Annotated[str, _at("end of the range, exclusive, after `from`", "2026-01-16T00:00:00Z")],
    granularity: Annotated[
        Granularity,
        QueryParameter(description="raw: every snap; 1m/1h/1d: per UTC bucket the last snap"),
    ] = "raw",
    as_of: Annotated[
        str | None, _at("read the series as it was known at this time", "2026-01-16T00:00:00Z")
    ] = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> ASGIApp:
    """Latest (or as-of) versions with `from <= snap < to`, cursor-paginated."""
    series = _series(reference_data_id)
    try:
        body = await query_service.history(
            series,
            _timestamp(from_, "query", "from"),
            _timestamp(to, "query", "to"),
            granularity=granularity,
            as_of=_optional_timestamp(as_of, "as_of"),
            limit=limit,
            cursor=cursor,
        )
    except InvalidQuery as exc:
        raise _invalid(exc) from None
    return _json(body)


@get(
    "/v1/reference-data/{reference_data_id:str}/observations",
    tags=["official values"],
    **requires(READ),
    summary="Lineage: the raw observations behind a snap",
    operation_id="getLineage",
    responses={
        200: ok(LineagePage, "observations", "the three observations", examples.LINEAGE),
        **_PROBLEMS,
    },
)
async def get_lineage(
    reference_data_id: SeriesPath,
    query_service: NamedDependency[QueryService],
    snap: Annotated[str, _at("the snap, e.g. 2026-01-15T14:00:00Z", examples.SNAP_TEXT)],
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> ASGIApp:
    """Every observation of the snap with its `received_at`, in order of receipt."""
    series = _series(reference_data_id)
    try:
        body = await query_service.lineage(
            series, _timestamp(snap, "query", "snap"), limit=limit, cursor=cursor
        )
    except InvalidQuery as exc:
        raise _invalid(exc) from None
    return _json(body)


@get(
    "/v1/reference-data/{reference_data_id:str}/quality",
    tags=["quality"],
    **requires(READ),
    summary="Quality summary over a window of snaps",
    operation_id="getQuality",
    responses={
        200: ok(QualitySummary, "quality summary", "one official snap", examples.QUALITY),
        **_PROBLEMS,
    },
)
async def get_quality(
    reference_data_id: SeriesPath,
    query_service: NamedDependency[QueryService],
    window: Annotated[
        str | None,
        QueryParameter(
            description="the last window of snaps, a count and a unit (s, m, h, d) of at "
            "most 366 days, e.g. 1h, 30m, 7d (default 1h; not with from/to)",
            schema_extra={"pattern": WINDOW_PATTERN},
            examples=[Example(value="1h")],
        ),
    ] = None,
    from_: Annotated[
        str | None, _at("instead of window: first snap", "2026-01-15T00:00:00Z", "from")
    ] = None,
    to: Annotated[
        str | None,
        _at("instead of window: end, exclusive, after `from`", "2026-01-16T00:00:00Z"),
    ] = None,
) -> ASGIApp:
    """Count, average and minimum score, suspect count and average dimensions."""
    series = _series(reference_data_id)
    start, end = _optional_timestamp(from_, "from"), _optional_timestamp(to, "to")
    if (start is None) != (end is None) or (window is not None and start is not None):
        raise ApiProblem(
            400,
            "give either window, or both from and to",
            errors=[ProblemItem(loc=["query", "window"], msg="window or from/to")],
        )
    try:
        body = await query_service.quality(
            series,
            window=_window("1h" if window is None else window) if start is None else None,
            start=start,
            end=end,
        )
    except InvalidQuery as exc:
        raise _invalid(exc) from None
    return _json(body)


ROUTES = [get_official_value, get_versions, get_history, get_lineage, get_quality]
