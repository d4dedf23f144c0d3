"""The HTTP layer's sampling fast path: response header, incoming contexts, spans, metrics.

A small Litestar app with the production middleware (`instrument_http`), an
in-memory span exporter and an in-memory metric reader; requests go straight to the
ASGI app (no server), so thousands of them measure the sampling rate end to end.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.params import FromPath
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.settings import TelemetrySettings
from app.telemetry.distributions import Distributions
from app.telemetry.http import instrument_http
from app.telemetry.logging import JsonFormatter
from app.telemetry.metrics import QisMetrics
from app.telemetry.tracing import build_tracer_provider, install_propagators

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
ROOT_HEX = "5759e988bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"
QUERY_PATH = "/v1/reference-data/ETH-USD"
QUERY_ROUTE = "GET /v1/reference-data/{reference_data_id}"
_log = logging.getLogger("qis.test.http")


@get("/health/live", sync_to_thread=False)
def live() -> dict[str, str]:
    _log.info("live")
    return {"status": "ok"}


@get("/v1/reference-data/{reference_data_id:str}", sync_to_thread=False)
def read(reference_data_id: FromPath[str]) -> dict[str, str]:
    _log.info("read")
    return {"id": reference_data_id}


@post("/v1/observations", status_code=202, sync_to_thread=False)
def ingest() -> dict[str, int]:
    return {"accepted": 1}


@dataclass
class Harness:
    app: Litestar
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    distributions: Distributions
    logs: io.StringIO

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str]]:
        return asyncio.run(asgi_request(self.app, method, path, headers or {}))

    def logged(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines()]

    def http_metrics(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        """HttpRequests per (route, status class) and HttpLatency counts per route."""
        data = self.reader.get_metrics_data()
        requests: dict[tuple[str, str], int] = {}
        latency: dict[str, int] = {}
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    assert metric.name != "httplatency"  # counted in the distributions
                    for point in metric.data.data_points:
                        attributes = dict(point.attributes or {})
                        if metric.name == "httprequests":  # the SDK lower-cases names
                            key = (str(attributes["Route"]), str(attributes["StatusClass"]))
                            requests[key] = requests.get(key, 0) + int(point.value)  # type: ignore[union-attr]
        for metric in self.distributions.collect():
            assert metric.name == "HttpLatency"
            for point in metric.data.data_points:
                route = str(dict(point.attributes or {})["Route"])
                latency[route] = latency.get(route, 0) + int(point.count)  # type: ignore[union-attr]
        return requests, latency


async def asgi_request(
    app: Litestar, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    response: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response["status"] = message["status"]
            response["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

    await app(scope, receive, send)  # type: ignore[arg-type]
    return response["status"], response["headers"]


def harness(**rates: float) -> Harness:
    settings = TelemetrySettings(
        traces_exporter="memory",
        sample_rate_ingestion=rates.get("ingestion", 0.0),
        sample_rate_query=rates.get("query", 0.0),
        sample_rate_health=rates.get("health", 0.0),
        sample_rate_default=0.0,
    )
    install_propagators()
    spans = InMemorySpanExporter()
    provider = build_tracer_provider(settings, Resource.create({}), spans)
    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(preferred_temporality={Counter: delta, Histogram: delta})
    distributions = Distributions()
    metrics = QisMetrics(
        MeterProvider(metric_readers=[reader]).get_meter("qis"), "api", distributions=distributions
    )
    app = Litestar(route_handlers=[live, read, ingest], logging_config=None)
    instrument_http(app, provider, metrics)
    return Harness(app, spans, reader, distributions, io.StringIO())


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    yield stream
    _log.removeHandler(handler)


def header_fields(value: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in value.split(";"))


def test_unsampled_request_has_sampled_0_and_the_logs_root(captured_logs: io.StringIO) -> None:
    h = harness()
    status, headers = h.request("GET", QUERY_PATH)
    assert status == 200
    fields = header_fields(headers["x-amzn-trace-id"])
    assert fields["Sampled"] == "0"
    assert len(fields["Parent"]) == 16
    (entry,) = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert entry["trace_id"] == fields["Root"]
    assert entry["span_id"] == fields["Parent"]
    assert h.spans.get_finished_spans() == ()
    # a fresh trace id per request
    _, again = h.request("GET", QUERY_PATH)
    assert header_fields(again["x-amzn-trace-id"])["Root"] != fields["Root"]


def test_untraced_ids_come_from_one_draw_and_the_header_follows_the_clock(
    captured_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.telemetry.http as http

    h = harness()
    draws = iter([(0xABC << 96) | (0x1234 << 64) | 0xFEED, 7 << 64, (1 << 160) - 1])
    clock = iter([0x6B1123FA, 0x6B1123FA, 0x6B1123FB])
    monkeypatch.setattr(http, "_getrandbits", lambda bits: next(draws))
    monkeypatch.setattr(http, "_time", lambda: float(next(clock)) + 0.5)
    values = [h.request("GET", QUERY_PATH)[1]["x-amzn-trace-id"] for _ in range(3)]
    assert values == [
        f"Root=1-6b1123fa-{0xABC << 32 | 0x1234:024x};Parent={0xFEED:016x};Sampled=0",
        # a span id of 0 is invalid: 1 instead, in the header and in the context
        f"Root=1-6b1123fa-{7:024x};Parent={1:016x};Sampled=0",
        f"Root=1-6b1123fb-{'f' * 24};Parent={'f' * 16};Sampled=0",  # the next second
    ]
    logged = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    fields = [header_fields(value) for value in values]
    assert [(e["trace_id"], e["span_id"]) for e in logged] == [
        (f["Root"], f["Parent"]) for f in fields
    ]


def test_the_highest_route_bound_decides_without_the_path() -> None:
    h = harness(ingestion=0.5, query=0.25)
    route = h.app.asgi_handler._route_sampler  # type: ignore[attr-defined]
    assert route.highest_bound == route._bounds["ingestion"]
    assert route.highest_bound > route._bounds["query"] > route._bounds["health"] == 0


def test_sampled_request_is_traced_under_the_route_template(captured_logs: io.StringIO) -> None:
    h = harness(query=1.0)
    status, headers = h.request("GET", QUERY_PATH)
    assert status == 200
    fields = header_fields(headers["x-amzn-trace-id"])
    assert fields["Sampled"] == "1"
    (span,) = h.spans.get_finished_spans()
    assert span.name == QUERY_ROUTE
    assert span.kind is SpanKind.SERVER
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/v1/reference-data/{reference_data_id}"
    assert span.context is not None
    hex_id = f"{span.context.trace_id:032x}"
    assert fields["Root"] == f"1-{hex_id[:8]}-{hex_id[8:]}"
    assert fields["Parent"] == f"{span.context.span_id:016x}"
    (entry,) = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert entry["trace_id"] == fields["Root"]


@pytest.mark.parametrize(
    "incoming",
    [
        {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"},
        {"traceparent": f"00-{ROOT_HEX}-{PARENT}-01"},
    ],
)
def test_incoming_sampled_context_is_traced_even_at_a_zero_rate(incoming: dict[str, str]) -> None:
    h = harness()  # every root rate 0 %
    status, headers = h.request("GET", "/health/live", incoming)
    assert status == 200
    fields = header_fields(headers["x-amzn-trace-id"])
    assert (fields["Root"], fields["Sampled"]) == (ROOT, "1")
    (span,) = h.spans.get_finished_spans()
    assert span.name == "GET /health/live"
    assert span.context is not None
    assert span.parent is not None
    assert f"{span.context.trace_id:032x}" == ROOT_HEX
    assert f"{span.parent.span_id:016x}" == PARENT
    assert fields["Parent"] == f"{span.context.span_id:016x}"


@pytest.mark.parametrize(
    "incoming",
    [
        {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=0"},
        {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=?"},
        {"traceparent": f"00-{ROOT_HEX}-{PARENT}-00"},
    ],
)
def test_incoming_unsampled_context_keeps_its_root_and_is_not_traced(
    incoming: dict[str, str], captured_logs: io.StringIO
) -> None:
    h = harness(query=1.0)  # the route alone would be traced
    status, headers = h.request("GET", QUERY_PATH, incoming)
    assert status == 200
    fields = header_fields(headers["x-amzn-trace-id"])
    assert (fields["Root"], fields["Sampled"]) == (ROOT, "0")
    assert fields["Parent"] != PARENT  # this request's own (unrecorded) span id
    assert h.spans.get_finished_spans() == ()
    (entry,) = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert entry["trace_id"] == ROOT


@pytest.mark.parametrize(
    "header",
    [
        f"Root={ROOT};Sampled=1",  # what an Application Load Balancer sends
        f"Self=1-67891233-abcdef012345678912345678;Root={ROOT};Sampled=1",  # Self ignored
        f"Root={ROOT};Lineage=a87bd80c:1|68fd508a:5;Sampled=1",  # unknown fields tolerated
        f" Root={ROOT} ; Sampled=1 ",
    ],
)
def test_root_only_sampled_header_continues_the_load_balancers_trace(
    header: str, captured_logs: io.StringIO
) -> None:
    h = harness()  # every root rate 0 %: only the header's decision can trace it
    status, headers = h.request("GET", QUERY_PATH, {"X-Amzn-Trace-Id": header})
    assert status == 200
    fields = header_fields(headers["x-amzn-trace-id"])
    assert (fields["Root"], fields["Sampled"]) == (ROOT, "1")
    (span,) = h.spans.get_finished_spans()
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" == ROOT_HEX
    assert span.parent is None  # the server span is the trace's first span
    assert fields["Parent"] == f"{span.context.span_id:016x}"
    (entry,) = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert entry["trace_id"] == ROOT


def test_root_only_unsampled_header_keeps_its_root_and_is_not_traced(
    captured_logs: io.StringIO,
) -> None:
    h = harness(query=1.0)  # the route alone would be traced
    _, headers = h.request("GET", QUERY_PATH, {"X-Amzn-Trace-Id": f"Root={ROOT};Sampled=0"})
    fields = header_fields(headers["x-amzn-trace-id"])
    assert (fields["Root"], fields["Sampled"]) == (ROOT, "0")
    assert len(fields["Parent"]) == 16
    assert h.spans.get_finished_spans() == ()
    (entry,) = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert (entry["trace_id"], entry["span_id"]) == (ROOT, fields["Parent"])


@pytest.mark.parametrize("header", [f"Root={ROOT}", f"Root={ROOT};Sampled=?"])
@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_root_only_header_without_a_decision_lets_the_route_decide_on_that_root(
    header: str, rate: float
) -> None:
    h = harness(query=rate)
    _, headers = h.request("GET", QUERY_PATH, {"X-Amzn-Trace-Id": header})
    fields = header_fields(headers["x-amzn-trace-id"])
    assert fields["Root"] == ROOT
    assert fields["Sampled"] == ("1" if rate else "0")
    assert len(h.spans.get_finished_spans()) == (1 if rate else 0)


def test_root_only_decision_is_deterministic_on_the_root() -> None:
    """At 50 %, each Root gets one decision, the same in every process that sees it."""
    # Spread over the low 64 bits, which the ratio sampler compares with its bound.
    roots = [f"1-5759e988-{(i * 0x9E3779B97F4A7C15) % (1 << 96):024x}" for i in range(1, 200)]
    decisions = []
    for _ in range(2):
        h = harness(query=0.5)
        seen = []
        for root in roots:
            _, headers = h.request("GET", QUERY_PATH, {"X-Amzn-Trace-Id": f"Root={root}"})
            fields = header_fields(headers["x-amzn-trace-id"])
            assert fields["Root"] == root
            seen.append(fields["Sampled"])
        decisions.append(seen)
    assert decisions[0] == decisions[1]
    assert 0 < decisions[0].count("1") < len(roots)  # both outcomes happen


@pytest.mark.parametrize(
    "header",
    [
        "Root=1-5759e988-bd862e3fe1be46a99427279;Sampled=1",  # 23 hex digits
        "Root=2-5759e988-bd862e3fe1be46a994272793;Sampled=1",  # unknown version
        "Root=1-5759e98g-bd862e3fe1be46a994272793;Sampled=1",  # not hex
        "Root=1-00000000-000000000000000000000000;Sampled=1",  # the invalid all-zero id
        "Sampled=1",
    ],
)
def test_malformed_root_starts_a_new_trace(header: str) -> None:
    h = harness()
    _, headers = h.request("GET", QUERY_PATH, {"X-Amzn-Trace-Id": header})
    fields = header_fields(headers["x-amzn-trace-id"])
    assert fields["Root"] not in header
    assert fields["Sampled"] == "0"  # the route's 0 % decided, not the header
    assert h.spans.get_finished_spans() == ()


def test_http_metrics_are_recorded_per_route_on_both_paths() -> None:
    h = harness(query=1.0)  # query requests take the traced path, the others the fast one
    for _ in range(3):
        h.request("GET", QUERY_PATH)
    h.request("GET", "/health/live")
    h.request("GET", "/health/live", {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"})
    h.request("GET", "/no/such/route")
    h.request("POST", "/v1/observations")
    requests, latency = h.http_metrics()
    assert requests == {
        (QUERY_ROUTE, "2xx"): 3,
        ("GET /health/live", "2xx"): 2,
        ("GET unmatched", "4xx"): 1,
        ("POST /v1/observations", "2xx"): 1,
    }
    assert latency == {
        QUERY_ROUTE: 3,
        "GET /health/live": 2,
        "GET unmatched": 1,
        "POST /v1/observations": 1,
    }
    assert len(h.spans.get_finished_spans()) == 4  # 3 query + the sampled incoming parent
    # counted once: a second collection sees no new requests
    assert h.http_metrics() == ({}, {})


def test_end_to_end_sampling_rate_is_the_route_rate() -> None:
    """One decision per request, not two: ~10 % of ingestion requests yield a server span."""
    h = harness(ingestion=0.10, query=0.05)
    requests = 6000

    async def run() -> list[str]:
        out = []
        for i in range(requests):
            path, method = ("/v1/observations", "POST") if i % 2 == 0 else (QUERY_PATH, "GET")
            _, headers = await asgi_request(h.app, method, path, {})
            out.append(headers["x-amzn-trace-id"])
        return out

    responses = asyncio.run(run())
    spans = h.spans.get_finished_spans()
    ingestion = [s for s in spans if s.name == "POST /v1/observations"]
    query = [s for s in spans if s.name == QUERY_ROUTE]
    assert len(ingestion) + len(query) == len(spans)
    # binomial: sd 0.55 points for ingestion, 0.40 for query, over 3000 requests each
    assert abs(len(ingestion) / (requests / 2) - 0.10) <= 0.02, len(ingestion)
    assert abs(len(query) / (requests / 2) - 0.05) <= 0.015, len(query)
    # every span is announced as sampled, and only those
    assert sum(r.endswith(";Sampled=1") for r in responses) == len(spans)


def test_sampled_span_carries_the_request_and_the_status() -> None:
    h = harness(ingestion=1.0)
    status, _ = h.request("POST", "/v1/observations")
    assert status == 202
    (span,) = h.spans.get_finished_spans()
    assert span.attributes is not None
    assert {k: span.attributes[k] for k in ("http.method", "http.target", "http.status_code")} == {
        "http.method": "POST",
        "http.target": "/v1/observations",
        "http.status_code": 202,
    }
    assert span.attributes["qis.route_class"] == "ingestion"


def test_excluded_paths_are_never_traced_but_keep_header_and_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_LITESTAR_EXCLUDED_URLS", "^/health, nothing-else")
    h = harness(query=1.0, health=1.0)
    incoming = {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"}
    _, excluded = h.request("GET", "/health/live", incoming)
    _, traced = h.request("GET", QUERY_PATH)
    assert header_fields(excluded["x-amzn-trace-id"])["Root"] == ROOT
    assert header_fields(excluded["x-amzn-trace-id"])["Sampled"] == "0"
    assert header_fields(traced["x-amzn-trace-id"])["Sampled"] == "1"
    assert [s.name for s in h.spans.get_finished_spans()] == [QUERY_ROUTE]
    requests, _ = h.http_metrics()
    assert requests == {("GET /health/live", "2xx"): 1, (QUERY_ROUTE, "2xx"): 1}


def test_a_w3c_parents_trace_state_is_kept() -> None:
    h = harness()
    incoming = {"traceparent": f"00-{ROOT_HEX}-{PARENT}-01", "tracestate": "vendor=opaque"}
    h.request("GET", "/health/live", incoming)
    (span,) = h.spans.get_finished_spans()
    assert span.context is not None
    assert span.context.trace_state.get("vendor") == "opaque"
