"""What the sync and async clients share: requests, retries, batching, decoding."""

from __future__ import annotations

import email.utils
import random
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import httpx
import msgspec

from qis_client.errors import QisProblem, UnexpectedResponse, problem_from_response
from qis_client.ids import observation_id
from qis_client.models import SubmittedObservation

T = TypeVar("T")

MAX_BATCH = 5000
MAX_BODY_BYTES = 2 * 1024 * 1024
_PREFIX = b'{"observations":['
_SUFFIX = b"]}"
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again.

    At most `max_attempts` tries in all. An answer in `retry_statuses` (429, 502, 503,
    504) or a transport error (connect, read timeout, dropped connection) is retried:
    after `Retry-After` when the server sent one (giving up at once when it asks for more
    than `max_retry_after` seconds), else after an exponential backoff with full jitter
    (`backoff_base * 2**n`, capped at `backoff_max`). Every route of the API is
    idempotent (observation ids are content hashes, a PUT replaces), so retrying never
    duplicates anything.
    """

    max_attempts: int = 5
    backoff_base: float = 0.2
    backoff_max: float = 10.0
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (1-based); None: give up."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))


NO_RETRY = RetryPolicy(max_attempts=1)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a delay (`120`) or an HTTP date; None when absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its answer."""

    method: str
    path: str
    decode: type[T]
    ok: frozenset[int] = frozenset({200})
    params: dict[str, str | int] = field(default_factory=dict)
    content: bytes | None = None
    retry: bool = True

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        headers = {"Content-Type": "application/json"} if self.content is not None else None
        return client.build_request(
            self.method, self.path, params=self.params, content=self.content, headers=headers
        )

    def result(self, response: httpx.Response) -> T:
        if response.status_code not in self.ok:
            raise error(response)
        try:
            return msgspec.json.decode(response.content, type=self.decode)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UnexpectedResponse(
                f"{self.method} {self.path}: {response.status_code} answer is not a "
                f"{self.decode.__name__}: {exc}"
            ) from exc


def error(response: httpx.Response) -> QisProblem:
    return problem_from_response(
        response.status_code,
        response.reason_phrase,
        response.content,
        retry_after_seconds(response.headers.get("Retry-After")),
    )


def retryable(policy: RetryPolicy, call: Call[Any], response: httpx.Response) -> bool:
    return call.retry and response.status_code in policy.retry_statuses


# --- URLs ------------------------------------------------------------------------------


def segment(text: str) -> str:
    """One path segment, percent-encoded (series ids are `[A-Z0-9._:-]`)."""
    return urllib.parse.quote(text, safe=":")


def instant(ts: datetime) -> str:
    """An aware timestamp as RFC 3339 in UTC (`2026-01-15T14:00:00Z`)."""
    if ts.tzinfo is None:
        raise ValueError("naive timestamp: give a time zone (e.g. datetime.UTC)")
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def params(**values: Any) -> dict[str, str | int]:
    """Query parameters without the None ones; datetimes as RFC 3339."""
    out: dict[str, str | int] = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name.rstrip("_")] = instant(value) if isinstance(value, datetime) else value
    return out


# --- batching --------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """A request body of at most `max_batch` observations and `max_body_bytes` bytes."""

    body: bytes
    observation_ids: list[str]


def batches(
    observations: Iterable[SubmittedObservation], max_batch: int, max_body_bytes: int
) -> Iterator[Batch]:
    """Split observations into request bodies by count and by encoded size.

    Each observation is encoded once; ids are derived as the server derives them (a naive
    timestamp raises ValueError here, before anything is sent).
    """
    room = max_body_bytes - len(_PREFIX) - len(_SUFFIX)
    items: list[bytes] = []
    ids: list[str] = []
    size = 0
    for observation in observations:
        ids_next = observation_id(observation)
        item = _encoder.encode(observation)
        if len(item) > room:
            raise ValueError(
                f"observation {ids_next} encodes to {len(item)} bytes, above the body limit"
            )
        added = len(item) + (1 if items else 0)
        if items and (len(items) >= max_batch or size + added > room):
            yield Batch(_PREFIX + b",".join(items) + _SUFFIX, ids)
            items, ids, size = [], [], 0
            added = len(item)
        items.append(item)
        ids.append(ids_next)
        size += added
    if items:
        yield Batch(_PREFIX + b",".join(items) + _SUFFIX, ids)


@dataclass
class IngestResult:
    """What a (possibly batched) post accepted, summed over its requests."""

    accepted: int = 0
    duplicates: int = 0
    requests: int = 0
    observation_ids: list[str] = field(default_factory=list)
