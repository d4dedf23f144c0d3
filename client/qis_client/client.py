"""`QisClient`: the synchronous client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeVar

import httpx

from qis_client import _calls
from qis_client._core import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    Batch,
    Call,
    IngestResult,
    RetryPolicy,
    batches,
    retry_after_seconds,
    retryable,
)
from qis_client.auth import BearerAuth, TokenProvider, static_token
from qis_client.errors import QisConnectionError
from qis_client.models import (
    Descriptor,
    Granularity,
    HistoryItem,
    HistoryPage,
    LineagePage,
    Observation,
    ObservationsAccepted,
    OfficialValue,
    QualitySummary,
    Readiness,
    Series,
    SeriesConfig,
    SeriesPage,
    StoredDescriptor,
    SubmittedObservation,
)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_PAGES = 1_000_000  # a bound on any iteration: a server repeating a cursor cannot loop us


class Page(Protocol[T_co]):
    """A paginated answer: its items and the cursor of the next page (None: the last)."""

    @property
    def items(self) -> Sequence[T_co]: ...

    @property
    def next_cursor(self) -> str | None: ...


def walk(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of the pages `fetch(cursor)` returns, from the first (cursor None)."""
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def auth_for(token: str | TokenProvider | BearerAuth | None) -> BearerAuth | None:
    if token is None or isinstance(token, BearerAuth):
        return token
    return BearerAuth(static_token(token) if isinstance(token, str) else token)


class QisClient:
    """Synchronous client of the QIS HTTP API.

    >>> with QisClient("http://127.0.0.1:8000") as qis:
    ...     qis.post_observations(observations)
    ...     for point in qis.history("EURUSD", start, end):
    ...         print(point.snap, point.value)

    `token`: a bearer token, or a `TokenProvider` (refreshed before expiry and once on a
    401). `retry`: the `RetryPolicy`. `max_batch`/`max_body_bytes`: the server's limits
    (5,000 observations, 2 MiB) used to split posts. `transport`, `headers`, `timeout`
    go to the underlying `httpx.Client`; `sleep` waits between attempts.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | TokenProvider | BearerAuth | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_batch: int = MAX_BATCH,
        max_body_bytes: int = MAX_BODY_BYTES,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url,
            auth=auth_for(token),
            timeout=timeout,
            headers=headers,
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call[T]) -> T:
        """Send one request, retrying as the policy says; the decoded answer or an error."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt, None) if call.retry else None
                if delay is None:
                    raise QisConnectionError(
                        f"{call.method} {call.path}: {exc!r} (attempt {attempt})"
                    ) from exc
            else:
                if not retryable(self.retry, call, response):
                    return call.result(response)
                delay = self.retry.delay(
                    attempt, retry_after_seconds(response.headers.get("Retry-After"))
                )
                if delay is None:
                    return call.result(response)
            self._sleep(delay)

    # --- ingestion -----------------------------------------------------------------------

    def post_observations(self, observations: Iterable[SubmittedObservation]) -> IngestResult:
        """Post observations in as many requests as the server's limits need, in order.

        Safe to call again with the same observations after any failure: ids are content
        hashes, so what was already accepted is not duplicated downstream.
        """
        result = IngestResult()
        for batch in batches(observations, self.max_batch, self.max_body_bytes):
            _add(result, batch, self.post_batch(batch))
        return result

    def post_batch(self, batch: Batch) -> ObservationsAccepted:
        """One request of a `batches(...)` split."""
        return self.call(_calls.post_observations(batch.body))

    # --- series --------------------------------------------------------------------------

    def put_series(self, reference_data_id: str, config: SeriesConfig) -> Series:
        """Create or replace a series' configuration."""
        return self.call(_calls.put_series(reference_data_id, config))

    def get_series(self, reference_data_id: str) -> Series:
        """One series' configuration (`NotFound` when unknown)."""
        return self.call(_calls.get_series(reference_data_id))

    def put_descriptor(self, reference_data_id: str, descriptor: Descriptor) -> StoredDescriptor:
        """Create or replace a series' descriptor document (`qis/admin`); audited."""
        return self.call(_calls.put_descriptor(reference_data_id, descriptor))

    def get_descriptor(self, reference_data_id: str) -> StoredDescriptor:
        """A series' descriptor (`NotFound` when the series has none, or descriptors are
        disabled on the server)."""
        return self.call(_calls.get_descriptor(reference_data_id))

    def list_series_page(self, limit: int | None = None, cursor: str | None = None) -> SeriesPage:
        """One page of series, ordered by id."""
        return self.call(_calls.list_series(limit, cursor))

    def list_series(self, page_size: int | None = None) -> Iterator[Series]:
        """Every series, page after page."""
        return walk(lambda cursor: self.list_series_page(page_size, cursor))

    # --- official values -----------------------------------------------------------------

    def official_value(
        self,
        reference_data_id: str,
        snap: datetime,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> OfficialValue:
        """The latest version, `version` N, or the highest recorded by `as_of`."""
        return self.call(_calls.official_value(reference_data_id, snap, version, as_of))

    def versions(self, reference_data_id: str, snap: datetime) -> list[OfficialValue]:
        """Every version of a snap, oldest first (`NotFound` when there is none)."""
        return self.call(_calls.versions(reference_data_id, snap)).items

    def history_page(
        self,
        reference_data_id: str,
        from_: datetime,
        to: datetime,
        *,
        granularity: Granularity | None = None,
        as_of: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        """One page of history: `from_ <= snap < to`."""
        return self.call(
            _calls.history(reference_data_id, from_, to, granularity, as_of, limit, cursor)
        )

    def history(
        self,
        reference_data_id: str,
        from_: datetime,
        to: datetime,
        *,
        granularity: Granularity | None = None,
        as_of: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[HistoryItem]:
        """Every point of a history, fetching pages as the iteration goes."""
        return walk(
            lambda cursor: self.history_page(
                reference_data_id,
                from_,
                to,
                granularity=granularity,
                as_of=as_of,
                limit=page_size,
                cursor=cursor,
            )
        )

    def lineage_page(
        self,
        reference_data_id: str,
        snap: datetime,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> LineagePage:
        """One page of the observations behind a snap."""
        return self.call(_calls.lineage(reference_data_id, snap, limit, cursor))

    def lineage(
        self, reference_data_id: str, snap: datetime, *, page_size: int | None = None
    ) -> Iterator[Observation]:
        """Every observation of a snap, in order of receipt."""
        return walk(
            lambda cursor: self.lineage_page(
                reference_data_id, snap, limit=page_size, cursor=cursor
            )
        )

    def quality(
        self,
        reference_data_id: str,
        *,
        window: str | None = None,
        from_: datetime | None = None,
        to: datetime | None = None,
    ) -> QualitySummary:
        """Quality over the last `window` (e.g. `1h`, the default) or over `[from_, to)`."""
        return self.call(_calls.quality(reference_data_id, window, from_, to))

    def readiness(self) -> Readiness:
        """`GET /health/ready` (a 503 is returned too: its body says what is failing)."""
        return self.call(_calls.readiness())


def _add(result: IngestResult, batch: Batch, accepted: ObservationsAccepted) -> None:
    result.accepted += accepted.accepted
    result.duplicates += accepted.duplicates
    result.requests += 1
    result.observation_ids += accepted.observation_ids or batch.observation_ids
