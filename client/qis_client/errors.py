"""Errors as exceptions: a problem+json answer becomes a `QisProblem` subclass per status.

| status        | exception             | retried by the client          |
|---------------|-----------------------|--------------------------------|
| 400, 422      | `InvalidRequest`      | no                             |
| 401, 403      | `Unauthorized`        | 401 once, after a token refresh|
| 404           | `NotFound`            | no                             |
| 413           | `PayloadTooLarge`     | no                             |
| 415           | `UnsupportedMediaType`| no                             |
| 429           | `RateLimited`         | yes, after `Retry-After`       |
| 503           | `Unavailable`         | yes, after `Retry-After`       |
| other 5xx     | `ServerError`         | 502 and 504 yes, 500 no        |

A transport failure that outlasts the retries is a `QisConnectionError`; a success whose
body is not the documented one is an `UnexpectedResponse`.
"""

from __future__ import annotations

import msgspec

from qis_client.models import Problem, ProblemItem

__all__ = [
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "QisConnectionError",
    "QisError",
    "QisProblem",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "UnsupportedMediaType",
    "problem_from_response",
]

_problem = msgspec.json.Decoder(Problem)


class QisError(Exception):
    """Base of every error the client raises."""


class QisConnectionError(QisError):
    """No answer from the service (connect error, timeout) after the last attempt."""


class UnexpectedResponse(QisError):
    """A success answer whose body does not decode as the documented struct."""


class QisProblem(QisError):
    """An error answer of the service, with its problem+json document."""

    def __init__(self, problem: Problem, retry_after: float | None = None) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail}")
        self.problem = problem
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def title(self) -> str:
        return self.problem.title

    @property
    def detail(self) -> str:
        return self.problem.detail

    @property
    def type(self) -> str:
        return self.problem.type

    @property
    def errors(self) -> list[ProblemItem]:
        """The invalid fields (validation failures), each with its `loc` and `msg`."""
        errors = self.problem.errors
        return [] if isinstance(errors, msgspec.UnsetType) else errors


class InvalidRequest(QisProblem):
    """400 or 422: the request (body, parameter, cursor) was rejected; nothing was done."""


class Unauthorized(QisProblem):
    """401 or 403: missing, invalid or insufficient credentials."""


class NotFound(QisProblem):
    """404: no such series, or no official value (yet) for that snap."""


class PayloadTooLarge(QisProblem):
    """413: the body is above the server's limit."""


class UnsupportedMediaType(QisProblem):
    """415."""


class RateLimited(QisProblem):
    """429: still rate limited after the last attempt."""


class Unavailable(QisProblem):
    """503: still unavailable (or shedding load) after the last attempt."""


class ServerError(QisProblem):
    """Any other 5xx."""


_BY_STATUS: dict[int, type[QisProblem]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: RateLimited,
    503: Unavailable,
}


def problem_from_response(
    status: int, reason: str, body: bytes, retry_after: float | None = None
) -> QisProblem:
    """The exception for an error answer; a body that is not a problem document is kept as
    the detail (truncated), so a proxy's HTML error page is still readable."""
    try:
        problem = _problem.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body[:500].decode("utf-8", errors="replace")
        problem = Problem(title=reason or "Error", status=status, detail=text)
    exc_type = _BY_STATUS.get(status) or (ServerError if status >= 500 else QisProblem)
    return exc_type(problem, retry_after)
