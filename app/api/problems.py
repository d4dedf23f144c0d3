"""problem+json (RFC 9457) for every error, rendered in one place."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from app.domain.errors import FieldError

PROBLEM_JSON = "application/problem+json"
NOT_JSON = "body is not valid JSON (UTF-8, no lone surrogate escapes)"
_log = logging.getLogger("qis.api")
_encoder = msgspec.json.Encoder()
_PATH = re.compile(r" - at `(?:key` in `)?\$(?P<path>[^`]*)`$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[...\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemItem(msgspec.Struct, frozen=True):
    """One invalid field: where (`loc`) and why (`msg`)."""

    loc: list[str | int]
    msg: str


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """An RFC 9457 problem document; `errors` only for validation failures."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ProblemItem] | msgspec.UnsetType = msgspec.UNSET


_INTERNAL = Problem(
    title="Internal Server Error", status=500, detail="internal error; see the trace id"
)


class ApiProblem(Exception):
    """Raised by handlers to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[ProblemItem] | None = None,
        headers: dict[str, str] | None = None,
        type_: str = "about:blank",
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(
            type=type_,
            title=_TITLES.get(status, "Error"),
            status=status,
            detail=detail,
            errors=msgspec.UNSET if errors is None else errors,
        )
        self.headers = headers or {}


def item_from_msgspec(error: msgspec.ValidationError, prefix: list[str | int]) -> ProblemItem:
    """Turn msgspec's `msg - at `$.a[0].b`` into loc `[*prefix, 'a', 0, 'b']` and the message."""
    text = str(error)
    loc: list[str | int] = list(prefix)
    match = _PATH.search(text)
    if match:
        text = text[: match.start()]
        for name, index in _STEP.findall(match["path"]):
            if name:
                loc.append(name)
            elif index:
                loc.append(int(index))
    unknown = _UNKNOWN.match(text)
    if unknown:
        loc.append(unknown["field"])
        text = "unknown field"
    return ProblemItem(loc=loc, msg=text)


def items_from_domain(errors: list[FieldError], prefix: list[str | int]) -> list[ProblemItem]:
    """Domain field errors as problem items."""
    return [ProblemItem(loc=[*prefix, *e.loc], msg=e.msg) for e in errors]


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    """The one way a problem leaves the service."""
    return Response(
        content=_encoder.encode(problem),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def handle_api_problem(_: Request[Any, Any, Any], exc: ApiProblem) -> Response[bytes]:
    return problem_response(exc.problem, exc.headers)


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Framework errors (404, 405, 413, parameter validation) as problem+json."""
    errors = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [
            ProblemItem(
                # `source` is Litestar's ParamType (a str enum): its value, e.g. "query".
                loc=[
                    str(getattr(e.get("source", "query"), "value", e.get("source", "query"))),
                    str(e.get("key", "")),
                ],
                msg=str(e.get("message", "invalid")),
            )
            for e in exc.extra
            if isinstance(e, dict)
        ]
    status = exc.status_code
    if status >= 500:
        # Framework-wrapped failures: log the real cause, never send it.
        _log.error("request failed", exc_info=exc.__cause__ or exc)
        return problem_response(_INTERNAL)
    return problem_response(
        Problem(
            title=_TITLES.get(status, "Error"),
            status=status,
            detail=exc.detail,
            errors=msgspec.UNSET if errors is None else errors,
        ),
        dict(exc.headers or {}),
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A 500 never leaks a stack trace; the log line carries it with the trace id."""
    _log.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(_INTERNAL)


EXCEPTION_HANDLERS = {
    ApiProblem: handle_api_problem,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
