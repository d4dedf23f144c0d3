"""`AsyncQisClient`: the asyncio client, the same API as `QisClient` with `await`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

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
from qis_client.auth import AsyncTokenProvider, BearerAuth, static_token
from qis_client.client import DEFAULT_TIMEOUT, MAX_PAGES, Page, _add
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


async def walk(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """Every item of the pages `await fetch(cursor)` returns, from the first (cursor None)."""
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _auth(token: str | AsyncTokenProvider | BearerAuth | None) -> BearerAuth | None:
    if token is None or isinstance(token, BearerAuth):
        return token
    return BearerAuth(static_token(token) if isinstance(token, str) else token)


class AsyncQisClient:
    """Asyncio client of the QIS HTTP API (see `QisClient` for the arguments).

    >>> async with AsyncQisClient("http://127.0.0.1:8000") as qis:
    ...     await qis.post_observations(observations, concurrency=4)
    ...     async for point in qis.history("EURUSD", start, end):
    ...         print(point.snap, point.value)

    The token provider may be an `async def`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | AsyncTokenProvider | BearerAuth | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_batch: int = MAX_BATCH,
        max_body_bytes: int = MAX_BODY_BYTES,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url,
            auth=_auth(token),
            timeout=timeout,
            headers=headers,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, call: Call[T]) -> T:
        """Send one request, retrying as the policy says; the decoded answer or an error."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.send(call.request(self._http))
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
            await self._sleep(delay)

    # --- ingestion -----------------------------------------------------------------------

    async def post_observations(
        self, observations: Iterable[SubmittedObservation], *, concurrency: int = 1
    ) -> IngestResult:
        """Post observations in as many requests as the server's limits need.

        Up to `concurrency` requests are in flight at once; the result lists ids in input
        order. On an error the requests still in flight are cancelled and the error is
        raised; calling again with the same observations is safe (ids are content hashes).
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        result = IngestResult()
        window: list[tuple[Batch, asyncio.Task[ObservationsAccepted]]] = []

        async def drain(keep: int) -> None:
            while len(window) > keep:
                batch, task = window.pop(0)
                _add(result, batch, await task)

        try:
            for batch in batches(observations, self.max_batch, self.max_body_bytes):
                window.append((batch, asyncio.create_task(self.post_batch(batch))))
                await drain(concurrency - 1)
            await drain(0)
        except BaseException:
            # An error answer, a naive timestamp further on, or a cancellation: stop the
            # requests still in flight before raising.
            for _, task in window:
                task.cancel()
            await asyncio.gather(*(task for _, task in window), return_exceptions=True)
            raise
        return result

    async def post_batch(self, batch: Batch) -> ObservationsAccepted:
        """One request of a `batches(...)` split."""
        return await self.call(_calls.post_observations(batch.body))

    # --- series --------------------------------------------------------------------------

    async def put_series(self, reference_data_id: str, config: SeriesConfig) -> Series:
        """Create or replace a series' configuration."""
        return await self.call(_calls.put_series(reference_data_id, config))

    async def get_series(self, reference_data_id: str) -> Series:
        """One series' configuration (`NotFound` when unknown)."""
        return await self.call(_calls.get_series(reference_data_id))

    async def put_descriptor(
        self, reference_data_id: str, descriptor: Descriptor
    ) -> StoredDescriptor:
        """Create or replace a series' descriptor document (`qis/admin`); audited."""
        return await self.call(_calls.put_descriptor(reference_data_id, descriptor))

    async def get_descriptor(self, reference_data_id: str) -> StoredDescriptor:
        """A series' descriptor (`NotFound` when the series has none, or descriptors are
        disabled on the server)."""
        return await self.call(_calls.get_descriptor(reference_data_id))

    async def list_series_page(
        self, limit: int | None = None, cursor: str | None = None
    ) -> SeriesPage:
        """One page of series, ordered by id."""
        return await self.call(_calls.list_series(limit, cursor))

    def list_series(self, page_size: int | None = None) -> AsyncIterator[Series]:
        """Every series, page after page."""
        return walk(lambda cursor: self.list_series_page(page_size, cursor))

    # --- official values -----------------------------------------------------------------

    async def official_value(
        self,
        reference_data_id: str,
        snap: datetime,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> OfficialValue:
        """The latest version, `version` N, or the highest recorded by `as_of`."""
        return await self.call(_calls.official_value(reference_data_id, snap, version, as_of))

    async def versions(self, reference_data_id: str, snap: datetime) -> list[OfficialValue]:
        """Every version of a snap, oldest first (`NotFound` when there is none)."""
        return (await self.call(_calls.versions(reference_data_id, snap))).items

    async def history_page(
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
        return await self.call(
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
    ) -> AsyncIterator[HistoryItem]:
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

    async def lineage_page(
        self,
        reference_data_id: str,
        snap: datetime,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> LineagePage:
        """One page of the observations behind a snap."""
        return await self.call(_calls.lineage(reference_data_id, snap, limit, cursor))

    def lineage(
        self, reference_data_id: str, snap: datetime, *, page_size: int | None = None
    ) -> AsyncIterator[Observation]:
        """Every observation of a snap, in order of receipt."""
        return walk(
            lambda cursor: self.lineage_page(
                reference_data_id, snap, limit=page_size, cursor=cursor
            )
        )

    async def quality(
        self,
        reference_data_id: str,
        *,
        window: str | None = None,
        from_: datetime | None = None,
        to: datetime | None = None,
    ) -> QualitySummary:
        """Quality over the last `window` (e.g. `1h`, the default) or over `[from_, to)`."""
        return await self.call(_calls.quality(reference_data_id, window, from_, to))

    async def readiness(self) -> Readiness:
        """`GET /health/ready` (a 503 is returned too: its body says what is failing)."""
        return await self.call(_calls.readiness())
