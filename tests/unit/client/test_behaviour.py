"""The client's behaviour at its HTTP boundary (httpx.MockTransport): retries and
Retry-After, token refresh, batching, pagination, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import msgspec
import pytest
from qis_client import (
    AsyncQisClient,
    Descriptor,
    InvalidRequest,
    NotFound,
    QisClient,
    QisConnectionError,
    QisProblem,
    RateLimited,
    RetryPolicy,
    SeriesConfig,
    SubmittedObservation,
    Token,
    Unavailable,
    UnexpectedResponse,
    observation_id,
)

Handler = Callable[[httpx.Request], httpx.Response]
SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
PROBLEM = "application/problem+json"


def problem(status: int, detail: str, **headers: str) -> httpx.Response:
    body = {"type": "about:blank", "title": "T", "status": status, "detail": detail}
    return httpx.Response(
        status, content=json.dumps(body), headers={"content-type": PROBLEM, **headers}
    )


def accepted(request: httpx.Request) -> httpx.Response:
    """What the server answers a valid post: its ids, as the client derives them too."""
    items = json.loads(request.content)["observations"]
    ids = [observation_id(msgspec.convert(item, SubmittedObservation)) for item in items]
    body = {"accepted": len(ids), "duplicates": len(ids) - len(set(ids)), "observation_ids": ids}
    return httpx.Response(202, json=body)


def observations(count: int, attributes: int = 0) -> list[SubmittedObservation]:
    return [
        SubmittedObservation(
            reference_data_id="EURUSD",
            source="bbg",
            snap=SNAP + timedelta(minutes=i),
            value=1.0 + i / 1000,
            observed_at=SNAP,
            attributes={f"k{j}": "x" * 200 for j in range(attributes)} or None,
        )
        for i in range(count)
    ]


class Recorder:
    """A MockTransport handler answering from a script, recording the requests."""

    def __init__(self, *answers: Handler | httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        # A copy: the auth flow re-sends the same request object with another header.
        self.requests.append(
            httpx.Request(
                request.method, request.url, headers=request.headers.copy(), content=request.read()
            )
        )
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, httpx.Response) else answer(request)


def client(recorder: Recorder, sleeps: list[float] | None = None, **kwargs: object) -> QisClient:
    waits = sleeps if sleeps is not None else []
    return QisClient(
        "http://qis.test",
        transport=httpx.MockTransport(recorder),
        sleep=waits.append,
        **kwargs,  # type: ignore[arg-type]
    )


# --- retries -------------------------------------------------------------------------


def test_a_503_with_retry_after_is_retried_after_that_delay_and_resends_the_same_body() -> None:
    recorder = Recorder(problem(503, "shedding", **{"Retry-After": "2"}), accepted)
    sleeps: list[float] = []
    result = client(recorder, sleeps).post_observations(observations(3))
    assert sleeps == [2.0]
    assert len(recorder.requests) == 2
    assert recorder.requests[0].content == recorder.requests[1].content
    assert result.accepted == 3
    assert result.observation_ids == [observation_id(o) for o in observations(3)]


def test_a_429_honours_an_http_date_retry_after() -> None:
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    recorder = Recorder(problem(429, "slow down", **{"Retry-After": later}), accepted)
    sleeps: list[float] = []
    client(recorder, sleeps).post_observations(observations(1))
    assert len(sleeps) == 1
    assert 25 <= sleeps[0] <= 31


def test_retries_are_bounded_and_the_last_answer_is_raised_typed() -> None:
    recorder = Recorder(problem(503, "log down", **{"Retry-After": "1"}))
    sleeps: list[float] = []
    qis = client(recorder, sleeps, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(Unavailable) as caught:
        qis.post_observations(observations(1))
    assert len(recorder.requests) == 3
    assert sleeps == [1.0, 1.0]
    assert caught.value.status == 503
    assert caught.value.detail == "log down"
    assert caught.value.retry_after == 1.0


def test_a_retry_after_beyond_the_policy_is_not_waited_for() -> None:
    recorder = Recorder(problem(429, "come back tomorrow", **{"Retry-After": "86400"}))
    sleeps: list[float] = []
    with pytest.raises(RateLimited):
        client(recorder, sleeps).get_series("EURUSD")
    assert sleeps == []
    assert len(recorder.requests) == 1


def test_without_retry_after_the_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=8, backoff_base=1.0, backoff_max=5.0)
    recorder = Recorder(problem(502, "bad gateway"))
    sleeps: list[float] = []
    with pytest.raises(QisProblem) as caught:
        client(recorder, sleeps, retry=policy).get_series("EURUSD")
    assert caught.value.status == 502
    assert len(sleeps) == 7
    assert all(0 <= s <= 5.0 for s in sleeps)
    for attempt in range(1, 8):
        assert all(
            0 <= policy.delay(attempt, None) <= min(5.0, 2 ** (attempt - 1))  # type: ignore[operator]
            for _ in range(50)
        )


def test_transport_errors_are_retried_then_raised_as_connection_errors() -> None:
    ok = httpx.Response(200, json=series_body())
    recorder = Recorder(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), ok)
    assert client(recorder).get_series("EURUSD").reference_data_id == "EURUSD"
    assert len(recorder.requests) == 3
    failing = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(QisConnectionError, match="refused"):
        client(failing, retry=RetryPolicy(max_attempts=2)).get_series("EURUSD")
    assert len(failing.requests) == 2


def test_a_4xx_is_not_retried() -> None:
    recorder = Recorder(problem(404, "no series 'NOPE'"))
    with pytest.raises(NotFound, match="no series 'NOPE'"):
        client(recorder).get_series("NOPE")
    assert len(recorder.requests) == 1


# --- errors --------------------------------------------------------------------------


def test_a_422_carries_the_problem_and_its_invalid_fields() -> None:
    body = {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "1 invalid observation(s); nothing was accepted",
        "errors": [{"loc": ["observations", 0, "value"], "msg": "Expected `float`"}],
    }
    recorder = Recorder(httpx.Response(422, json=body, headers={"content-type": PROBLEM}))
    with pytest.raises(InvalidRequest) as caught:
        client(recorder).post_observations(observations(1))
    assert caught.value.status == 422
    assert caught.value.title == "Unprocessable Content"
    assert [(e.loc, e.msg) for e in caught.value.errors] == [
        (["observations", 0, "value"], "Expected `float`")
    ]


def test_an_error_that_is_not_problem_json_keeps_its_text() -> None:
    recorder = Recorder(httpx.Response(500, text="<html>proxy down</html>"))
    with pytest.raises(QisProblem) as caught:
        client(recorder).get_series("EURUSD")
    assert caught.value.status == 500
    assert "proxy down" in caught.value.detail
    assert caught.value.errors == []


def test_a_success_with_an_undocumented_body_is_a_client_error_not_a_crash() -> None:
    recorder = Recorder(httpx.Response(200, json={"reference_data_id": "EURUSD"}))
    with pytest.raises(UnexpectedResponse, match="not a Series"):
        client(recorder).get_series("EURUSD")
    with pytest.raises(UnexpectedResponse):
        client(Recorder(httpx.Response(200, text="<html>"))).get_series("EURUSD")


def test_naive_timestamps_are_refused_before_anything_is_sent() -> None:
    recorder = Recorder(accepted)
    naive = SubmittedObservation(
        reference_data_id="X",
        source="s",
        snap=datetime(2026, 1, 1),
        value=1.0,
        observed_at=datetime(2026, 1, 1),
    )
    with pytest.raises(ValueError, match="naive"):
        client(recorder).post_observations([naive])
    with pytest.raises(ValueError, match="naive"):
        client(recorder).official_value("X", datetime(2026, 1, 1))
    assert recorder.requests == []


# --- batching ------------------------------------------------------------------------


def test_posts_are_split_by_count() -> None:
    recorder = Recorder(accepted)
    result = client(recorder, max_batch=4).post_observations(observations(10))
    sizes = [len(json.loads(r.content)["observations"]) for r in recorder.requests]
    assert sizes == [4, 4, 2]
    assert result.requests == 3
    assert result.accepted == 10
    assert result.observation_ids == [observation_id(o) for o in observations(10)]


def test_posts_are_split_by_body_size_and_no_body_exceeds_the_limit() -> None:
    recorder = Recorder(accepted)
    limit = 20_000  # about 6 observations carrying 3 attributes of 200 characters
    items = observations(40, attributes=3)
    result = client(recorder, max_body_bytes=limit).post_observations(items)
    bodies = [r.content for r in recorder.requests]
    assert len(bodies) > 1
    assert all(len(b) <= limit for b in bodies)
    sent = [o for b in bodies for o in json.loads(b)["observations"]]
    assert sent == [json.loads(msgspec.json.encode(o)) for o in items]
    assert result.accepted == 40
    assert recorder.requests[0].headers["content-type"] == "application/json"


def test_the_default_limits_are_the_servers() -> None:
    recorder = Recorder(accepted)
    client(recorder).post_observations(observations(5001))
    sizes = [len(json.loads(r.content)["observations"]) for r in recorder.requests]
    assert sizes == [5000, 1]


# --- auth ----------------------------------------------------------------------------


class Tokens:
    def __init__(self, lifetime: float) -> None:
        self.issued = 0
        self.lifetime = lifetime
        self.now = 1_000_000.0

    def __call__(self) -> Token:
        self.issued += 1
        return Token(f"t{self.issued}", self.now + self.lifetime)


def test_a_token_is_sent_reused_and_refreshed_before_it_expires() -> None:
    tokens = Tokens(lifetime=300)
    recorder = Recorder(httpx.Response(200, json=series_body()))
    qis = client(recorder, token=tokens)
    qis._http.auth._clock = lambda: tokens.now  # type: ignore[union-attr]
    qis.get_series("EURUSD")
    qis.get_series("EURUSD")
    tokens.now += 280  # within the 30 s leeway of the expiry
    qis.get_series("EURUSD")
    assert [r.headers["authorization"] for r in recorder.requests] == [
        "Bearer t1",
        "Bearer t1",
        "Bearer t2",
    ]


def test_a_401_refreshes_the_token_once_and_resends() -> None:
    tokens = Tokens(lifetime=3600)
    ok = httpx.Response(200, json=series_body())
    recorder = Recorder(problem(401, "expired"), ok)
    assert client(recorder, token=tokens).get_series("EURUSD").reference_data_id == "EURUSD"
    assert [r.headers["authorization"] for r in recorder.requests] == ["Bearer t1", "Bearer t2"]
    always = Recorder(problem(401, "bad audience"))
    with pytest.raises(QisProblem) as caught:
        client(always, token=Tokens(lifetime=3600)).get_series("EURUSD")
    assert caught.value.status == 401
    assert len(always.requests) == 2


def test_a_plain_string_token_is_a_bearer_token() -> None:
    recorder = Recorder(httpx.Response(200, json=series_body()))
    client(recorder, token="abc").get_series("EURUSD")
    assert recorder.requests[0].headers["authorization"] == "Bearer abc"


# --- pagination and URLs -------------------------------------------------------------


def history_item(minute: int) -> dict[str, object]:
    snap = (SNAP + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    return {
        "reference_data_id": "EURUSD",
        "snap": snap,
        "version": 1,
        "value": 1.0 + minute,
        "status": "official",
        "method": "median",
        "sources_used": ["bbg"],
        "sources_excluded": [],
        "quality": {
            "score": 1.0,
            "completeness": 1.0,
            "timeliness": 1.0,
            "consistency": 1.0,
            "validity": 1.0,
        },
        "supersedes": None,
        "recorded_at": snap,
        "bucket": snap,
        "count": 1,
    }


def series_body(reference_data_id: str = "EURUSD") -> dict[str, object]:
    return {
        "reference_data_id": reference_data_id,
        "config": {"min_sources": 2},
        "updated_at": "2026-01-15T14:00:00Z",
    }


def paged(pages: list[list[dict[str, object]]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        index = int(cursor) if cursor else 0
        following = str(index + 1) if index + 1 < len(pages) else None
        return httpx.Response(200, json={"items": pages[index], "next_cursor": following})

    return handler


def test_history_iterates_every_page_with_the_query_it_was_given() -> None:
    pages = [[history_item(0), history_item(1)], [history_item(2)], [history_item(3)]]
    recorder = Recorder(paged(pages))
    qis = client(recorder)
    items = list(qis.history("EURUSD", SNAP, SNAP + timedelta(hours=1), page_size=2))
    assert [i.value for i in items] == [1.0, 2.0, 3.0, 4.0]
    assert items[0].quality.score == 1.0
    assert [r.url.params.get("cursor") for r in recorder.requests] == [None, "1", "2"]
    first = recorder.requests[0]
    assert first.url.path == "/v1/reference-data/EURUSD/official-values"
    assert first.url.params["from"] == "2026-01-15T14:00:00Z"
    assert first.url.params["to"] == "2026-01-15T15:00:00Z"
    assert first.url.params["limit"] == "2"
    assert "granularity" not in first.url.params


def test_series_list_iterates_every_page() -> None:
    pages = [[series_body("A"), series_body("B")], [series_body("C")]]
    recorder = Recorder(paged(pages))
    ids = [s.reference_data_id for s in client(recorder).list_series(page_size=2)]
    assert ids == ["A", "B", "C"]


def test_official_value_url_puts_the_snap_in_utc() -> None:
    recorder = Recorder(
        httpx.Response(
            200, json={k: v for k, v in history_item(0).items() if k not in ("bucket", "count")}
        )
    )
    paris = SNAP.astimezone(timezone(timedelta(hours=1)))
    value = client(recorder).official_value("EUR:USD", paris, as_of=paris)
    assert value.snap == SNAP
    url = recorder.requests[0].url
    assert url.path == "/v1/reference-data/EUR:USD/official-values/2026-01-15T14:00:00Z"
    assert url.params["as_of"] == "2026-01-15T14:00:00Z"


def test_put_series_sends_only_the_fields_set() -> None:
    recorder = Recorder(httpx.Response(200, json=series_body()))
    series = client(recorder).put_series("EURUSD", SeriesConfig(min_sources=2, method="priority"))
    assert json.loads(recorder.requests[0].content) == {"min_sources": 2, "method": "priority"}
    assert recorder.requests[0].method == "PUT"
    assert series.config.min_sources == 2


DESCRIPTOR_BODY = {
    "reference_data_id": "EURUSD",
    "revision": 3,
    "updated_at": "2026-01-15T14:00:05.5Z",
    "descriptor": {
        "instrument": {"asset_class": "fx", "name": "EUR/USD", "currency": "EUR"},
        "vendor_symbols": [{"vendor": "bloomberg", "symbol": "EURUSD Curncy"}],
        "calendars": [{"name": "target", "timezone": "Europe/Berlin", "holidays": ["2026-12-25"]}],
    },
}


def test_put_descriptor_sends_the_document_and_reads_the_revision() -> None:
    recorder = Recorder(httpx.Response(200, json=DESCRIPTOR_BODY))
    sent = msgspec.convert(DESCRIPTOR_BODY["descriptor"], Descriptor)
    stored = client(recorder).put_descriptor("EURUSD", sent)
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("PUT", "/v1/reference-data/EURUSD/descriptor")
    assert json.loads(request.content) == DESCRIPTOR_BODY["descriptor"]  # defaults not sent
    assert stored.revision == 3
    assert stored.updated_at == datetime(2026, 1, 15, 14, 0, 5, 500000, tzinfo=UTC)
    assert stored.descriptor.calendars[0].holidays[0].isoformat() == "2026-12-25"


def test_get_descriptor_of_a_series_without_one_is_not_found() -> None:
    recorder = Recorder(problem(404, "no descriptor of 'EURUSD'"))
    with pytest.raises(NotFound, match="no descriptor"):
        client(recorder).get_descriptor("EURUSD")
    assert recorder.requests[0].url.path == "/v1/reference-data/EURUSD/descriptor"


async def test_async_get_descriptor() -> None:
    recorder = Recorder(httpx.Response(200, json=DESCRIPTOR_BODY))
    async with async_client(recorder, []) as qis:
        stored = await qis.get_descriptor("EUR:USD")
    assert recorder.requests[0].url.path == "/v1/reference-data/EUR:USD/descriptor"
    assert stored.descriptor.vendor_symbols[0].symbol == "EURUSD Curncy"


# --- async ---------------------------------------------------------------------------


def async_client(recorder: Recorder, sleeps: list[float], **kwargs: object) -> AsyncQisClient:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return AsyncQisClient(
        "http://qis.test",
        transport=httpx.MockTransport(recorder),
        sleep=sleep,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_async_retries_batches_concurrently_and_keeps_input_order() -> None:
    recorder = Recorder(problem(503, "busy", **{"Retry-After": "1"}), accepted)
    sleeps: list[float] = []
    async with async_client(recorder, sleeps, max_batch=3) as qis:
        result = await qis.post_observations(observations(10), concurrency=3)
    assert sleeps == [1.0]
    assert result.requests == 4
    assert result.accepted == 10
    assert result.observation_ids == [observation_id(o) for o in observations(10)]


async def test_async_history_and_a_refreshing_async_token_provider() -> None:
    issued: list[str] = []

    async def provider() -> Token:
        issued.append(f"a{len(issued) + 1}")
        return Token(issued[-1], None)

    pages = [[history_item(0)], [history_item(1)]]
    first = Recorder(problem(401, "expired"))
    handler = paged(pages)
    calls = {"n": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return first(request) if calls["n"] == 1 else handler(request)

    recorder = Recorder(answer)
    async with async_client(recorder, [], token=provider) as qis:
        values = [i.value async for i in qis.history("EURUSD", SNAP, SNAP + timedelta(hours=1))]
    assert values == [1.0, 2.0]
    assert issued == ["a1", "a2"]
    assert [r.headers["authorization"] for r in recorder.requests] == ["Bearer a1"] * 1 + [
        "Bearer a2"
    ] * 2


async def test_async_errors_are_typed_and_stop_the_other_batches() -> None:
    body = {"title": "Unprocessable Content", "status": 422, "detail": "bad", "errors": []}
    recorder = Recorder(httpx.Response(422, json=body))
    async with async_client(recorder, [], max_batch=2) as qis:
        with pytest.raises(InvalidRequest, match="bad"):
            await qis.post_observations(observations(10), concurrency=2)
    assert len(recorder.requests) <= 3


async def test_async_a_naive_timestamp_further_on_stops_the_requests_in_flight() -> None:
    recorder = Recorder(accepted)
    naive = SubmittedObservation(
        reference_data_id="X",
        source="s",
        snap=datetime(2026, 1, 1),
        value=1.0,
        observed_at=datetime(2026, 1, 1),
    )
    async with async_client(recorder, [], max_batch=1) as qis:
        with pytest.raises(ValueError, match="naive"):
            await qis.post_observations([*observations(3), naive], concurrency=8)
    assert len(recorder.requests) <= 3
