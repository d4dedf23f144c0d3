"""`POST /v1/observations`: validate all-or-nothing, then 202 only after the broker acked."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from opentelemetry import trace

from app.api.auth import INGEST, principal_of, requires
from app.api.examples import ACCEPTED
from app.api.openapi import ok, problems
from app.api.problems import (
    NOT_JSON,
    ApiProblem,
    ProblemItem,
    item_from_msgspec,
    items_from_domain,
)
from app.api.wire import ObservationsAccepted
from app.domain.bounds import in_bounds, submission_problems, submitted_problems
from app.domain.observation import MAX_BATCH, ObservationSubmission, SubmittedObservation
from app.ports import IngestionLog, IngestionLogUnavailable
from app.services.ingest import ingest
from app.telemetry.metrics import QisMetrics
from app.telemetry.tracing import annotate, traced_span

_submission = msgspec.json.Decoder(ObservationSubmission)
_item = msgspec.json.Decoder(SubmittedObservation)
_accepted = msgspec.json.Encoder()


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    observations: list[msgspec.Raw]


_envelope = msgspec.json.Decoder(_Envelope)
_BACKSLASH = ord("\\")  # an int needle: `in` is a bare memchr, no buffer to acquire
_tracer = trace.get_tracer("qis.api")  # a proxy: resolves to the provider installed at start-up
_errors_json = msgspec.json.Encoder()
ROUTE = "POST /v1/observations"
VALIDATION_RULES = (
    "series-id,source,finite-value,tz-aware,timestamp-range,offset-15:59,no-nul,"
    "batch-1..5000,attributes,no-unknown"
)


class InFlightLimit:
    """Counts requests being produced; above the bound new ones are shed with 503."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0

    def try_enter(self) -> bool:
        if self.current >= self.limit:
            return False
        self.current += 1
        return True

    def leave(self) -> None:
        self.current -= 1


def decode_submission(body: bytes) -> ObservationSubmission:
    """Decode in one pass; on a validation failure, re-decode item by item to list every error.

    After decoding, the bounds of app/domain/bounds.py: timestamps (range, offset) always,
    text (NUL) only when the body holds a `\\u0000` escape, the one way JSON spells NUL.
    """
    try:
        submission = _submission.decode(body)
    except msgspec.ValidationError:
        pass
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, f"{NOT_JSON}: {exc}") from None
    else:
        # The common case costs one memchr and one pass over the timestamps.
        if _BACKSLASH not in body and in_bounds(submission.observations):
            return submission
        problems = submission_problems(submission.observations, text=_may_hold_nul(body))
        if not problems:
            return submission
        raise _rejected(items_from_domain(problems, []))
    try:
        envelope = _envelope.decode(body)
    except msgspec.ValidationError as exc:
        item = item_from_msgspec(exc, [])
        if item.msg == "unknown field":
            raise ApiProblem(422, "request body has unknown fields", errors=[item]) from None
        raise ApiProblem(
            400, 'body must be an object {"observations": [...]}', errors=[item]
        ) from None
    count = len(envelope.observations)
    if not 1 <= count <= MAX_BATCH:
        raise ApiProblem(
            422,
            f"a request carries 1 to {MAX_BATCH} observations, got {count}",
            errors=[ProblemItem(loc=["observations"], msg=f"length must be 1..{MAX_BATCH}")],
        )
    errors: list[ProblemItem] = []
    for index, raw in enumerate(envelope.observations):
        try:
            observation = _item.decode(raw)
        except msgspec.ValidationError as exc:
            errors.append(item_from_msgspec(exc, ["observations", index]))
        else:
            errors += items_from_domain(submitted_problems(observation), ["observations", index])
    raise _rejected(errors)


def _may_hold_nul(body: bytes) -> bool:
    # A NUL can only arrive escaped; most bodies hold no backslash at all (one memchr).
    return _BACKSLASH in body and b"\\u0000" in body


def _rejected(errors: list[ProblemItem]) -> ApiProblem:
    invalid = len({e.loc[1] for e in errors if len(e.loc) > 1})
    return ApiProblem(422, f"{invalid} invalid observation(s); nothing was accepted", errors=errors)


def validated(body: bytes) -> ObservationSubmission:
    """`decode_submission` inside the `data-validation` span."""
    with traced_span(_tracer, "data-validation") as span:
        try:
            submission = decode_submission(body)
        except ApiProblem as problem:
            if span.is_recording():
                errors = problem.problem.errors
                annotate(
                    span,
                    {"data-type": "observation", "validation-rules": VALIDATION_RULES},
                    {
                        "validation-results": f"rejected: {problem.problem.detail}",
                        "error-details": _errors_json.encode(
                            errors[:20] if isinstance(errors, list) else []
                        ).decode(),
                    },
                )
            raise
        if span.is_recording():
            annotate(
                span,
                {"data-type": "observation", "validation-rules": VALIDATION_RULES},
                {
                    "validation-results": f"accepted {len(submission.observations)}",
                    "error-details": "[]",
                },
            )
        return submission


@post(
    "/v1/observations",
    status_code=202,
    tags=["ingestion"],
    operation_id="postObservations",
    **requires(INGEST),
    responses={
        202: ok(ObservationsAccepted, "every observation acknowledged", "3 accepted", ACCEPTED),
        **problems(
            s400="not JSON, or not the documented shape",
            s413="body above QIS_API__MAX_BODY_BYTES (2 MiB by default)",
            s415="media type is not application/json",
            s422="invalid items, each listed by index and field",
            s503="ingestion log unavailable or shedding load (with Retry-After)",
        ),
    },
)
async def post_observations(
    request: Request[Any, Any, Any],
    ingestion_log: NamedDependency[IngestionLog],
    in_flight: NamedDependency[InFlightLimit],
    retry_after_seconds: NamedDependency[int],
    metrics: NamedDependency[QisMetrics],
) -> Response[ObservationsAccepted]:
    """Accept observations; 202 only once the ingestion log acknowledged every one."""
    started = time.perf_counter()
    received_at = datetime.now(UTC)
    media_type, _ = request.content_type
    if media_type != "application/json":
        raise ApiProblem(415, f"expected application/json, got {media_type or 'nothing'}")
    submission = validated(await request.body())
    retry = {"Retry-After": str(retry_after_seconds)}
    if not in_flight.try_enter():
        raise ApiProblem(503, "shedding load: too many requests in flight", headers=retry)
    try:
        result = await ingest(
            submission.observations, ingestion_log, received_at, principal_of(request).actor
        )
    except IngestionLogUnavailable:
        raise ApiProblem(
            503, "ingestion log unavailable; nothing from this request was accepted", headers=retry
        ) from None
    finally:
        in_flight.leave()
    metrics.ingestion_latency(ROUTE, (time.perf_counter() - started) * 1000.0)
    metrics.observations_accepted(result.accepted)
    return Response(
        ObservationsAccepted(
            accepted=result.accepted,
            duplicates=result.duplicates,
            observation_ids=result.observation_ids,
        ),
        status_code=202,
    )
