"""Tracing for AWS X-Ray through OpenTelemetry: ids, propagation, per-route sampling, exporters.

Sampling, decided once at the root of a trace and inherited by every child:
- a request whose incoming context is sampled is traced (the caller decided);
- an incoming `X-Amzn-Trace-Id` with `Root` and `Parent` but without `Sampled=1`
  (`Sampled=0`, `Sampled=?` or none at all) is NOT traced (`XRayPropagator`). Deliberately:
  X-Ray's upstream already made the decision, and re-deciding would produce traces with
  missing parent segments. A header with only `Root=` (what an ALB adds) carries no
  parent, so our own per-route root sampler decides;
- without a usable parent, the route decides: ingestion 10 %, query 5 %, health 0 %,
  anything else the default rate (all in `TelemetrySettings`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import msgspec
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.aws.aws_xray_propagator import TRACE_HEADER_KEY
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import default_getter
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import ns_to_iso_str
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from app.settings import TelemetrySettings

ROUTE_CLASS = "qis.route_class"
XRAY_ANNOTATIONS = "aws.xray.annotations"


def traced_span(
    tracer: trace.Tracer,
    name: str,
    traced: bool | None = None,
    *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
) -> AbstractContextManager[trace.Span]:
    """`tracer.start_as_current_span(name, kind, attributes)` when the work is traced,
    else the invalid span.

    `traced` defaults to whether the current span is recorded: under an unsampled parent
    every child is unsampled too, and the SDK would still draw ids, ask the sampler and
    attach a context for it, a noticeable share of a small POST's CPU (docs/tracing.md,
    "Cost").
    """
    if traced is None:
        traced = trace.get_current_span().is_recording()
    if traced:
        return tracer.start_as_current_span(name, kind=kind, attributes=attributes)
    return nullcontext(trace.INVALID_SPAN)


def route_class(path: str) -> str:
    """The sampling class of a request path."""
    if path.startswith("/health"):
        return "health"
    if path.startswith("/v1/observations"):
        return "ingestion"
    if path.startswith("/v1/reference-data"):
        return "query"
    return "default"


class RouteSampler(Sampler):
    """Root sampler: a trace-id ratio per route class (read from the span's start attributes).

    Deterministic on the trace id (`TraceIdRatioBased`): `is_sampled(route, trace_id)`
    answers what `should_sample` will decide for a root span of that route and trace id,
    which lets the HTTP layer decide before any span exists (`app/telemetry/http.py`).
    """

    def __init__(self, rates: dict[str, float], default_rate: float) -> None:
        self._samplers: dict[str, Sampler] = {name: _ratio(rate) for name, rate in rates.items()}
        self._default = _ratio(default_rate)
        self._bounds = {name: _bound(sampler) for name, sampler in self._samplers.items()}
        self._default_bound = _bound(self._default)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if trace_id == _FORCED_SAMPLED.get():
            return ALWAYS_ON.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        chosen = self._default
        if attributes:
            chosen = self._samplers.get(str(attributes.get(ROUTE_CLASS, "")), self._default)
        return chosen.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def is_sampled(self, route: str, trace_id: int) -> bool:
        """`should_sample`'s decision for a root span of this route class, without a span."""
        return trace_id & _TRACE_ID_LIMIT < self._bounds.get(route, self._default_bound)

    @property
    def highest_bound(self) -> int:
        """No route samples a trace id whose low 64 bits are at or above this."""
        return max([self._default_bound, *self._bounds.values()])

    def path_sampled(self, path: str, trace_id: int) -> bool:
        """`is_sampled(route_class(path), trace_id)` in one call (every request asks)."""
        if path.startswith("/health"):
            bound = self._bounds.get("health", self._default_bound)
        elif path.startswith("/v1/observations"):
            bound = self._bounds.get("ingestion", self._default_bound)
        elif path.startswith("/v1/reference-data"):
            bound = self._bounds.get("query", self._default_bound)
        else:
            bound = self._default_bound
        return trace_id & _TRACE_ID_LIMIT < bound

    def get_description(self) -> str:
        return "RouteSampler"


_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT


def _bound(sampler: Sampler) -> int:
    """The trace-id bound below which `sampler` samples (`TraceIdRatioBased`'s rule)."""
    if sampler is ALWAYS_ON:
        return _TRACE_ID_LIMIT + 1
    if isinstance(sampler, TraceIdRatioBased):
        return sampler.bound
    return 0


def _ratio(rate: float) -> Sampler:
    if rate <= 0:
        return ALWAYS_OFF
    if rate >= 1:
        return ALWAYS_ON
    return TraceIdRatioBased(rate)


class QisSampler(ParentBased):
    """Parent-based: a parent's decision wins; without a usable parent, `route` decides."""

    def __init__(self, route: RouteSampler) -> None:
        super().__init__(
            root=route,
            remote_parent_sampled=ALWAYS_ON,
            remote_parent_not_sampled=ALWAYS_OFF,
            local_parent_sampled=ALWAYS_ON,
            local_parent_not_sampled=ALWAYS_OFF,
        )
        self.route = route


def build_sampler(settings: TelemetrySettings) -> QisSampler:
    """Parent-based: a remote parent's decision wins; otherwise the route's rate."""
    return QisSampler(
        RouteSampler(
            {
                "ingestion": settings.sample_rate_ingestion,
                "query": settings.sample_rate_query,
                "health": settings.sample_rate_health,
            },
            settings.sample_rate_default,
        )
    )


_PRESET_TRACE_ID: ContextVar[int] = ContextVar("qis_preset_trace_id", default=0)
# A trace id whose root span must be sampled whatever its route's rate: an upstream (the
# load balancer) already decided `Sampled=1` for it.
_FORCED_SAMPLED: ContextVar[int] = ContextVar("qis_forced_sampled", default=0)


class PresetTraceIds(IdGenerator):
    """X-Ray ids (`AwsXRayIdGenerator`), except that a trace id decided on before its root
    span starts (`preset_trace_id`) is the one that root span gets, once.

    The HTTP layer draws the trace id and asks the route sampler itself; when the answer
    is "sampled" it starts the server span with that same id, so the sampler, which is
    deterministic on the trace id, decides the same way again: one draw, not two.
    """

    def __init__(self, inner: IdGenerator | None = None) -> None:
        self._inner = inner or AwsXRayIdGenerator()

    def generate_span_id(self) -> int:
        return self._inner.generate_span_id()

    def generate_trace_id(self) -> int:
        preset = _PRESET_TRACE_ID.get()
        if preset:
            _PRESET_TRACE_ID.set(0)
            return preset
        return self._inner.generate_trace_id()

    def new_trace_id(self) -> int:
        """A fresh trace id, never a preset one."""
        return self._inner.generate_trace_id()


@contextmanager
def preset_trace_id(trace_id: int, *, sampled: bool = False) -> Iterator[None]:
    """The next root span started in this context gets `trace_id` (see `PresetTraceIds`);
    with `sampled`, it is sampled whatever its route's rate (an upstream decided so)."""
    token = _PRESET_TRACE_ID.set(trace_id)
    forced = _FORCED_SAMPLED.set(trace_id if sampled else 0)
    try:
        yield
    finally:
        _FORCED_SAMPLED.reset(forced)
        _PRESET_TRACE_ID.reset(token)


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line: traces of a local run, readable offline.

    The line has the fields of the SDK's `ReadableSpan.to_json`, encoded with msgspec and
    the resource encoded once: `to_json` re-serialised the resource for every span through
    the standard json module, a large share of a traced worker's CPU (a batch of a sampled
    request exports hundreds of spans).
    """

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._resources: dict[int, tuple[Resource, msgspec.Raw]] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = b"".join(_encode_span.encode(self._line(span)) + b"\n" for span in spans)
        with self._lock, self._path.open("ab") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def _line(self, span: ReadableSpan) -> dict[str, Any]:
        context = span.context
        return {
            "name": span.name,
            "context": None if context is None else _context_fields(context),
            "kind": str(span.kind),
            "parent_id": None if span.parent is None else f"0x{span.parent.span_id:016x}",
            "start_time": _iso(span.start_time),
            "end_time": _iso(span.end_time),
            "status": {
                "status_code": span.status.status_code.name,
                **({"description": span.status.description} if span.status.description else {}),
            },
            "attributes": dict(span.attributes or {}),
            "events": [
                {
                    "name": event.name,
                    "timestamp": _iso(event.timestamp),
                    "attributes": dict(event.attributes or {}),
                }
                for event in span.events
            ],
            "links": [
                {
                    "context": _context_fields(link.context),
                    "attributes": dict(link.attributes or {}),
                }
                for link in span.links
            ],
            "resource": self._resource(span.resource),
        }

    def _resource(self, resource: Resource) -> msgspec.Raw:
        cached = self._resources.get(id(resource))
        if cached is None or cached[0] is not resource:
            encoded = msgspec.Raw(
                _encode_span.encode(
                    {"attributes": dict(resource.attributes), "schema_url": resource.schema_url}
                )
            )
            cached = self._resources[id(resource)] = (resource, encoded)
        return cached[1]

    def shutdown(self) -> None:
        return None


_encode_span = msgspec.json.Encoder()


def _context_fields(context: trace.SpanContext) -> dict[str, str]:
    return {
        "trace_id": f"0x{context.trace_id:032x}",
        "span_id": f"0x{context.span_id:016x}",
        "trace_state": repr(context.trace_state),
    }


def _iso(nanoseconds: int | None) -> str | None:
    return ns_to_iso_str(nanoseconds) if nanoseconds else None


class XRayPropagator(AwsXRayPropagator):
    """X-Ray propagation where any `Sampled` other than `1` reads as "not sampled".

    The stock propagator rejects `Sampled=?` (a deferred decision) as a malformed header,
    which would turn the request into a fresh root and sample it at the route's rate.
    """

    def extract(
        self, carrier: Any, context: Context | None = None, getter: Any = default_getter
    ) -> Context:
        values = getter.get(carrier, TRACE_HEADER_KEY)
        if not values or len(values) != 1:
            return super().extract(carrier, context, getter)
        fields = [f.strip() for f in values[0].split(";") if f.strip()]
        normalised = [
            f if not f.startswith("Sampled=") or f == "Sampled=1" else "Sampled=0" for f in fields
        ]
        return super().extract({TRACE_HEADER_KEY: ";".join(normalised)}, context, default_getter)


def install_propagators() -> None:
    """W3C tracecontext and X-Ray headers, both read and written (X-Ray wins when both)."""
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), XRayPropagator()])
    )


def build_tracer_provider(
    settings: TelemetrySettings, resource: Resource, memory: InMemorySpanExporter | None = None
) -> TracerProvider:
    """TracerProvider with X-Ray ids, the sampler, and the configured exporter."""
    provider = TracerProvider(
        resource=resource, id_generator=PresetTraceIds(), sampler=build_sampler(settings)
    )
    if settings.traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    elif settings.traces_exporter == "file":
        provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(settings.traces_file)))
    elif settings.traces_exporter == "memory":
        provider.add_span_processor(SimpleSpanProcessor(memory or InMemorySpanExporter()))
    return provider


def xray_header(span: trace.Span) -> str | None:
    """`Root=1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx;Parent=...;Sampled=0|1` for a span, if valid."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return xray_header_value(
        context.trace_id, context.span_id, context.trace_flags.sampled
    ).decode()


_LOW_96_BITS = (1 << 96) - 1
_HEX = frozenset("0123456789abcdefABCDEF")


def xray_root_only(header: str) -> tuple[int, bool | None] | None:
    """The trace id and the `Sampled` decision (None: `?` or absent) of an
    `X-Amzn-Trace-Id` that names a `Root` but no `Parent`: what an Application Load
    Balancer sends (`Root=1-…`, sometimes `Self=1-…;Root=1-…`). None for any other header
    (with a `Parent` the propagator continues it; a malformed `Root` starts a new trace).

    `Self` is the load balancer's own segment and is ignored; unknown fields (`Lineage=`)
    are tolerated.
    """
    root: int | None = None
    sampled: bool | None = None
    for field in header.split(";"):
        key, _, value = field.strip().partition("=")
        if key == "Parent":
            return None
        if key == "Root":
            version, _, rest = value.partition("-")
            epoch, _, unique = rest.partition("-")
            if (
                version != "1"
                or len(epoch) != 8
                or len(unique) != 24
                or not _HEX.issuperset(epoch + unique)
            ):
                return None
            root = int(epoch + unique, 16)
        elif key == "Sampled":
            sampled = True if value == "1" else False if value == "0" else None
    if not root:
        return None
    return root, sampled


def xray_header_value(trace_id: int, span_id: int, sampled: bool) -> bytes:
    """The `X-Amzn-Trace-Id` value for these ids, as header bytes (the same text as
    `xray_trace_id` in logs for the `Root`)."""
    return b"Root=1-%08x-%024x;Parent=%016x;Sampled=%d" % (
        trace_id >> 96,
        trace_id & _LOW_96_BITS,
        span_id,
        1 if sampled else 0,
    )


def annotate(span: trace.Span, annotations: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Set the custom spans' X-Ray fields: annotations (indexed, listed in `aws.xray.annotations`)
    and metadata (plain attributes), as the ADOT X-Ray exporter expects them."""
    for key, value in {**annotations, **metadata}.items():
        span.set_attribute(
            key, value if isinstance(value, str | bool | int | float) else str(value)
        )
    span.set_attribute(XRAY_ANNOTATIONS, list(annotations))
