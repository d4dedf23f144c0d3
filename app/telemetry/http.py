"""HTTP server telemetry: Litestar's OpenTelemetry middleware plus X-Ray response headers,
route-template span names and per-route request metrics.

Sampling is decided here, before any span exists, so that the 90-95 % of requests that
are not traced skip the ASGI instrumentation entirely (see docs/tracing.md, "Cost"):

- an incoming `X-Amzn-Trace-Id` or `traceparent` is extracted with the global propagator;
  a valid sampled parent takes the full path (Litestar's middleware, a server span named
  by route template); a valid parent that is not sampled takes the fast path, keeping
  its trace id;
- without a usable parent, the trace id is drawn from the provider's id generator and
  the route sampler (deterministic on the trace id) is asked; "sampled" takes the full
  path with that same trace id preset (`preset_trace_id`), so the SDK's own decision on
  the root span is the same one, not a second draw;
- the fast path makes the request's context a `NonRecordingSpan` (trace id kept, a new
  span id, not sampled): logs carry the trace id, the Kafka headers carry the
  not-sampled decision downstream, the response carries `Sampled=0`.

Both paths add `X-Amzn-Trace-Id` to the response and record HttpRequests/HttpLatency.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.plugins.opentelemetry import (
    OpenTelemetryConfig,
    OpenTelemetryInstrumentationMiddleware,
)
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import asgi_getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from app.telemetry.metrics import QisMetrics, noop_metrics
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
_EXCLUDED_URLS = "OTEL_PYTHON_EXCLUDED_URLS"


def _load_balancer_root(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int, bool | None] | None:
    """`xray_root_only` of the request's `X-Amzn-Trace-Id`, if it has one."""
    for name, value in headers:
        if name == TRACE_HEADER:
            return xray_root_only(value.decode("latin-1"))
    return None


def _excluded_urls_configured(key: str) -> bool:
    """Whether `OTEL_PYTHON_<key>_EXCLUDED_URLS` (or the generic variable) is set, as
    `opentelemetry.util.http.get_excluded_urls` reads it."""
    return bool(
        os.environ.get(f"OTEL_PYTHON_{key}_EXCLUDED_URLS", os.environ.get(_EXCLUDED_URLS, ""))
    )


def span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """Start attributes: the sampler reads the route class from them (routing has not run yet)."""
    path = str(scope.get("path", ""))
    return f"{scope.get('method', '')} {path}", {ROUTE_CLASS: route_class(path)}


def _with_trace_header(message: HTTPResponseStartEvent, value: bytes) -> HTTPResponseStartEvent:
    """The response start with `X-Amzn-Trace-Id: value` added to its headers."""
    return {**message, "headers": [*message.get("headers", ()), (TRACE_HEADER, value)]}


def route_label(scope: Scope) -> str:
    """`METHOD /path/{template}` or `METHOD unmatched`: bounded cardinality for names, metrics."""
    template = scope.get("path_template")
    return f"{scope.get('method', '')} {template or 'unmatched'}"


@dataclass
class TracedRequestsConfig(OpenTelemetryConfig):
    """Litestar's OpenTelemetry configuration plus the metrics our middleware records."""

    metrics: QisMetrics = field(default_factory=lambda: noop_metrics("api"))


class TracedRequests(OpenTelemetryInstrumentationMiddleware):
    """Decides sampling first; traced requests go through Litestar's OpenTelemetry
    middleware (span renamed to the route template), the others through a fast path.
    Every response gets `X-Amzn-Trace-Id`; HttpRequests/HttpLatency are recorded per route."""

    def __init__(self, app: ASGIApp, config: OpenTelemetryConfig) -> None:
        super().__init__(app, config)
        self.metrics = config.metrics if isinstance(config, TracedRequestsConfig) else None
        provider = config.tracer_provider
        self._ids: PresetTraceIds | None = None
        self._sampler: QisSampler | None = None
        if (
            isinstance(provider, TracerProvider)
            and isinstance(provider.id_generator, PresetTraceIds)
            and isinstance(provider.sampler, QisSampler)
            # URLs excluded from tracing by environment: the ASGI middleware handles those
            and not _excluded_urls_configured(config.exclude_urls_env_key)
        ):
            self._ids = provider.id_generator
            self._sampler = provider.sampler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or self._ids is None or self._sampler is None:
            if scope["type"] != ScopeType.HTTP:
                await super().__call__(scope, receive, send)
            else:
                await self._traced(scope, receive, send, time.perf_counter())
            return
        started = time.perf_counter()
        ids = self._ids
        trace_id = 0
        trace_state: TraceState | None = None
        for name, _ in scope["headers"]:
            if name in _CONTEXT_HEADERS:
                parent = trace.get_current_span(
                    propagate.extract(scope, getter=asgi_getter)  # type: ignore[misc]
                ).get_span_context()
                if parent.is_valid:
                    if parent.trace_flags.sampled:
                        await self._traced(scope, receive, send, started)
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
                            decided = self._sampler.route.is_sampled(
                                route_class(scope["path"]), trace_id
                            )
                        if decided:
                            with preset_trace_id(trace_id, sampled=True):
                                await self._traced(scope, receive, send, started)
                            return
                break
        if not trace_id:
            trace_id = ids.new_trace_id()
            if self._sampler.route.is_sampled(route_class(scope["path"]), trace_id):
                with preset_trace_id(trace_id):
                    await self._traced(scope, receive, send, started)
                return

        # Not sampled: a non-recording span as the request's context, no ASGI instrumentation.
        span_id = ids.generate_span_id()
        span = NonRecordingSpan(SpanContext(trace_id, span_id, False, _NOT_SAMPLED, trace_state))
        status = 500

        async def send_with_trace_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = _with_trace_header(message, xray_header_value(trace_id, span_id, False))
            await send(message)

        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send_with_trace_header)
        finally:
            otel_context.detach(token)
            self._record(scope, status, started)

    async def _traced(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        """Litestar's OpenTelemetry middleware: the SDK starts the server span and decides
        (the same way as above: a sampled parent, or the preset trace id)."""
        status = 500

        async def send_with_trace_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                span = trace.get_current_span()
                label = route_label(scope)
                span.update_name(label)
                span.set_attribute("http.route", label.partition(" ")[2])
                context = span.get_span_context()
                if context.is_valid:
                    header = xray_header_value(
                        context.trace_id, context.span_id, context.trace_flags.sampled
                    )
                    message = _with_trace_header(message, header)
            await send(message)

        try:
            await super().__call__(scope, receive, send_with_trace_header)
        finally:
            self._record(scope, status, started)

    def _record(self, scope: Scope, status: int, started: float) -> None:
        """HttpRequests and HttpLatency for one request, on either path."""
        if self.metrics is not None:
            self.metrics.http_request(
                route_label(scope), status, (time.perf_counter() - started) * 1000.0
            )


def http_telemetry_middleware(provider: TracerProvider, metrics: QisMetrics) -> DefineMiddleware:
    """Litestar's OpenTelemetry middleware, as our subclass, for `Litestar(middleware=[...])`.

    Passed as middleware rather than as `OpenTelemetryPlugin(config)`: the plugin ignores
    `config.middleware_class`, while Litestar turns an OpenTelemetry middleware found in
    the middleware list into the outermost layer, keeping its class.
    """
    return TracedRequestsConfig(
        tracer_provider=provider,
        # The ASGI instrumentation's own http.server.* metrics would duplicate ours.
        meter=otel_metrics.NoOpMeter("asgi"),
        scope_span_details_extractor=span_details,
        exclude_spans=["receive", "send"],
        middleware_class=TracedRequests,
        metrics=metrics,
    ).middleware
