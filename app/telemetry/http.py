"""HTTP server telemetry: one plain ASGI middleware for the X-Amzn-Trace-Id response
header, the request's trace context, the server span of sampled requests and the
per-route request metrics.

Sampling is decided here, before any span exists, so that the 90-95 % of requests that
are not traced cost as little as possible (see docs/tracing.md, "Cost"):

- an incoming `X-Amzn-Trace-Id` or `traceparent` is extracted with the global propagator;
  a valid sampled parent is traced (a server span named by route template, under that
  parent); a valid parent that is not sampled keeps its trace id, untraced;
- a `X-Amzn-Trace-Id` with a `Root` and no `Parent` (what a load balancer adds)
  continues that Root: its `Sampled` decides, without one the route sampler does;
- without a usable parent, the trace id is drawn from the provider's id generator and
  the route sampler (deterministic on the trace id) is asked; "sampled" starts the
  server span with that same trace id preset (`preset_trace_id`), so the SDK's own
  decision on the root span is the same one, not a second draw;
- an untraced request's context is a span that only holds its ids (trace id kept, a new
  span id, not sampled): logs carry the trace id, the Kafka headers carry the
  not-sampled decision downstream, the response carries `Sampled=0`.

Both paths add `X-Amzn-Trace-Id` to the response and record HttpRequests/HttpLatency.
"""

from __future__ import annotations

import binascii
import os
import random
import re
import time
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from app.telemetry.metrics import FOLD_AT, QisMetrics, http_route
from app.telemetry.tracing import (
    ROUTE_CLASS,
    PresetTraceIds,
    QisSampler,
    preset_trace_id,
    route_class,
    xray_header_value,
    xray_root_only,
)

TRACE_HEADER = b"x-amzn-trace-id"
# Request headers that may carry a parent context (ASGI header names are lower-case).
_CONTEXT_HEADERS = frozenset((TRACE_HEADER, b"traceparent"))
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_LOW_64_BITS = (1 << 64) - 1
_getrandbits = random.getrandbits
_hexlify = binascii.hexlify
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT  # the bits the route sampler reads
_time = time.time
_new_untraced = object.__new__
# The key under which a Context holds its span, read once through the public API: an
# untraced request's Context is built from it in one step (`set_span_in_context` copies
# a Context twice).
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))
# Comma-separated regular expressions of paths never traced (searched in the path), as
# OpenTelemetry's instrumentations read them; the first one set wins.
EXCLUDED_URLS_VARIABLES = ("OTEL_PYTHON_LITESTAR_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")


def excluded_paths() -> re.Pattern[str] | None:
    """The paths excluded from tracing by environment, None when none are."""
    for variable in EXCLUDED_URLS_VARIABLES:
        patterns = [p.strip() for p in os.environ.get(variable, "").split(",") if p.strip()]
        if patterns:
            return re.compile("|".join(f"(?:{p})" for p in patterns))
    return None


# The propagation headers under the names the propagators look up (case-sensitively).
_CARRIER_NAMES = {
    TRACE_HEADER: "X-Amzn-Trace-Id",
    b"traceparent": "traceparent",
    b"tracestate": "tracestate",
}


def _context_variable() -> ContextVar[Context] | None:
    """The `ContextVar` behind OpenTelemetry's current context, when the runtime context
    is the SDK's default (`ContextVarsRuntimeContext`): setting and resetting it is what
    `attach` and `detach` do, without their four Python calls. None for any other
    runtime context (`OTEL_PYTHON_CONTEXT`), which the middleware then goes through."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is ContextVarsRuntimeContext:
        variable = getattr(runtime, "_current_context", None)
        if isinstance(variable, ContextVar):
            return variable
    return None


def _context_carrier(headers: Any) -> dict[str, str]:
    """The request's propagation headers, for the global propagator."""
    return {
        _CARRIER_NAMES[name]: value.decode("latin-1")
        for name, value in headers
        if name in _CARRIER_NAMES
    }


def _load_balancer_root(headers: Any) -> tuple[int, bool | None] | None:
    """`xray_root_only` of the request's `X-Amzn-Trace-Id`, if it has one."""
    for name, value in headers:
        if name == TRACE_HEADER:
            return xray_root_only(value.decode("latin-1"))
    return None


def _add_header(message: HTTPResponseStartEvent, value: bytes) -> None:
    """Add `X-Amzn-Trace-Id: value` to a response start, in a new header list (the app's
    list may be shared between responses, as a cached response's is)."""
    message["headers"] = [*message.get("headers", ()), (TRACE_HEADER, value)]


def route_label(scope: Scope) -> str:
    """`METHOD /path/{template}` or `METHOD unmatched`: bounded cardinality for names, metrics."""
    return http_route(str(scope.get("method", "")), scope.get("path_template") or "")


class _UntracedSpan(NonRecordingSpan):
    """An untraced request's current span: its ids, with the `SpanContext` built only
    when something reads it (a log line, a Kafka header, an instrumented client).

    Made without a constructor call (`_new_untraced`, then `_ids` set): a Python call
    less per request."""

    _ids: tuple[int, int, TraceState | None]
    _built: SpanContext | None = None

    def get_span_context(self) -> SpanContext:
        built = self._built
        if built is None:
            trace_id, span_id, trace_state = self._ids
            built = self._built = SpanContext(trace_id, span_id, False, _NOT_SAMPLED, trace_state)
        return built

    def __repr__(self) -> str:
        return f"_UntracedSpan({self.get_span_context()!r})"


class TracedRequests:
    """Decides sampling first; sampled requests get a SERVER span named by route template,
    the others only their ids. Every response gets `X-Amzn-Trace-Id`; HttpRequests and
    HttpLatency are recorded per route. Other scopes (lifespan, websocket) pass through."""

    def __init__(self, app: ASGIApp, provider: TracerProvider, metrics: QisMetrics) -> None:
        self.app = app
        sampler, ids = provider.sampler, provider.id_generator
        if not isinstance(sampler, QisSampler) or not isinstance(ids, PresetTraceIds):
            raise TypeError("the tracer provider of build_tracer_provider is expected")
        self._route_sampler = sampler.route
        self._ids = ids
        self._tracer = provider.get_tracer("qis.http")
        self._metrics = metrics
        # Bound once: the untraced path calls each of these for every request.
        self._path_sampled = sampler.route.path_sampled
        self._highest_bound = sampler.route.highest_bound
        self._root_prefix = (-1, b"")
        self._requests, self._fold = metrics.http_request_buffer()
        self._context_var = _context_variable()
        self._excluded = excluded_paths()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        trace_id = 0
        trace_state: TraceState | None = None
        for name, _ in scope["headers"]:
            if name in _CONTEXT_HEADERS:
                parent_context = propagate.extract(_context_carrier(scope["headers"]))
                parent = trace.get_current_span(parent_context).get_span_context()
                if parent.is_valid:
                    if parent.trace_flags.sampled and not self._is_excluded(scope):
                        await self._traced(scope, receive, send, started, parent_context)
                        return
                    trace_id, trace_state = parent.trace_id, parent.trace_state
                else:
                    root = _load_balancer_root(scope["headers"])
                    if root is not None:
                        # Continue the load balancer's trace: the server span is its
                        # first span. Its Sampled wins; without one the route decides,
                        # on the trace id, as every service seeing that Root does.
                        trace_id, decided = root
                        if decided is None:
                            decided = self._route_sampler.is_sampled(
                                route_class(scope["path"]), trace_id
                            )
                        if decided and not self._is_excluded(scope):
                            with preset_trace_id(trace_id, sampled=True):
                                await self._traced(scope, receive, send, started, None)
                            return
                break
        if trace_id:
            span_id = self._ids.generate_span_id()
            header = xray_header_value(trace_id, span_id, False)
        else:
            # X-Ray ids (epoch seconds in the trace id's high 32 bits, as
            # AwsXRayIdGenerator makes them) from one random draw for both.
            bits = _getrandbits(160)
            second = int(_time())
            trace_id = (second << 96) | (bits >> 64)
            # The route sampler decides on the trace id's low 64 bits: at or above the
            # highest route bound no route samples, and the path need not be classified.
            if ((bits >> 64) & _TRACE_ID_LIMIT) < self._highest_bound and (
                self._path_sampled(scope["path"], trace_id) and not self._is_excluded(scope)
            ):
                with preset_trace_id(trace_id):
                    await self._traced(scope, receive, send, started, None)
                return
            span_id = bits & _LOW_64_BITS
            if span_id:
                prefix = self._root_prefix
                if prefix[0] != second:
                    prefix = self._root_prefix = (second, b"Root=1-%08x-" % second)
                hexed = _hexlify(bits.to_bytes(20, "big"))
                header = prefix[1] + hexed[:24] + b";Parent=" + hexed[24:] + b";Sampled=0"
            else:  # a span id is never 0
                span_id = 1
                header = xray_header_value(trace_id, span_id, False)

        # Not traced: the ids as the request's context, no span, no span processor. The
        # fewest Python operations: each costs several times its own time in a real
        # request (measured in instructions: benchmarks/results/telemetry-cost.md).
        status = 500

        def send_with_trace_header(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (TRACE_HEADER, header)]
            return send(message)

        span = _new_untraced(_UntracedSpan)
        span._ids = (trace_id, span_id, trace_state)
        context = Context({_SPAN_KEY: span})
        variable = self._context_var
        token = variable.set(context) if variable is not None else otel_context.attach(context)
        try:
            await self.app(scope, receive, send_with_trace_header)
        finally:
            if variable is not None:
                variable.reset(token)
            else:
                otel_context.detach(token)
            requests = self._requests
            requests.append(
                (
                    scope["method"],
                    scope.get("path_template") or "",
                    status,
                    (time.perf_counter() - started) * 1000.0,
                )
            )
            if len(requests) >= FOLD_AT:
                self._fold()

    def _is_excluded(self, scope: Scope) -> bool:
        """Paths excluded from tracing by environment (`EXCLUDED_URLS_VARIABLES`)."""
        return self._excluded is not None and bool(self._excluded.search(scope["path"]))

    async def _traced(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        started: float,
        parent: Context | None,
    ) -> None:
        """A SERVER span under `parent` (or a root span with the preset trace id, which
        the SDK's sampler decides the same way as above), renamed to the route template
        once routing has run."""
        status = 500
        method = str(scope.get("method", ""))
        path = str(scope.get("path", ""))
        with self._tracer.start_as_current_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                ROUTE_CLASS: route_class(path),
                "http.method": method,
                "http.scheme": str(scope.get("scheme", "http")),
                "http.target": path,
            },
        ) as span:

            async def send_with_trace_header(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    label = route_label(scope)
                    span.update_name(label)
                    span.set_attribute("http.route", label.partition(" ")[2])
                    span.set_attribute("http.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                    context = span.get_span_context()
                    if context.is_valid:
                        header = xray_header_value(
                            context.trace_id, context.span_id, context.trace_flags.sampled
                        )
                        _add_header(message, header)
                await send(message)

            try:
                await self.app(scope, receive, send_with_trace_header)
            finally:
                self._metrics.http_request(
                    str(scope.get("method", "")),
                    scope.get("path_template") or "",
                    status,
                    (time.perf_counter() - started) * 1000.0,
                )


def instrument_http(app: Litestar, provider: TracerProvider | None, metrics: QisMetrics) -> None:
    """Wrap `app`'s ASGI handler in `TracedRequests`, as Litestar's OpenTelemetry plugin
    does with its middleware: outside routing and the exception handlers, so 404s and
    500s get the header and the metrics too. Nothing without a tracer provider
    (telemetry off)."""
    if provider is not None:
        app.asgi_handler = TracedRequests(app.asgi_handler, provider, metrics)
