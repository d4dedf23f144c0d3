"""HTTP server telemetry: Litestar's OpenTelemetry middleware plus X-Ray response headers,
route-template span names and per-route request metrics."""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.plugins.opentelemetry import (
    OpenTelemetryConfig,
    OpenTelemetryInstrumentationMiddleware,
)
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from app.telemetry.metrics import QisMetrics
from app.telemetry.tracing import ROUTE_CLASS, route_class, xray_header

TRACE_HEADER = b"x-amzn-trace-id"


def span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """Start attributes: the sampler reads the route class from them (routing has not run yet)."""
    path = str(scope.get("path", ""))
    return f"{scope.get('method', '')} {path}", {ROUTE_CLASS: route_class(path)}


def route_label(scope: Scope) -> str:
    """`METHOD /path/{template}` or `METHOD unmatched`: bounded cardinality for names, metrics."""
    template = scope.get("path_template")
    return f"{scope.get('method', '')} {template or 'unmatched'}"


class TracedRequests(OpenTelemetryInstrumentationMiddleware):
    """Adds `X-Amzn-Trace-Id` to every response, names the span by route template, and
    records HttpRequests/HttpLatency per route."""

    metrics: QisMetrics

    def __init__(self, app: ASGIApp, config: OpenTelemetryConfig) -> None:
        super().__init__(app, config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await super().__call__(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_trace_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                span = trace.get_current_span()
                label = route_label(scope)
                span.update_name(label)
                span.set_attribute("http.route", label.partition(" ")[2])
                header = xray_header(span)
                if header:
                    headers = [*message.get("headers", ()), (TRACE_HEADER, header.encode())]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await super().__call__(scope, receive, send_with_trace_header)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            self.metrics.http_request(route_label(scope), status, elapsed_ms)


def http_telemetry_middleware(provider: TracerProvider, metrics: QisMetrics) -> DefineMiddleware:
    """Litestar's OpenTelemetry middleware, as our subclass, for `Litestar(middleware=[...])`.

    Passed as middleware rather than as `OpenTelemetryPlugin(config)`: the plugin ignores
    `config.middleware_class`, while Litestar turns an OpenTelemetry middleware found in
    the middleware list into the outermost layer, keeping its class.
    """
    middleware = type("TracedRequestsWithMetrics", (TracedRequests,), {"metrics": metrics})
    return OpenTelemetryConfig(
        tracer_provider=provider,
        # The ASGI instrumentation's own http.server.* metrics would duplicate ours.
        meter=otel_metrics.NoOpMeter("asgi"),
        scope_span_details_extractor=span_details,
        exclude_spans=["receive", "send"],
        middleware_class=middleware,
    ).middleware
