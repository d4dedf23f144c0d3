"""The JSON-lines span file, and `traced_span` (no child spans under an unsampled one)."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
    use_span,
)

from app.telemetry.tracing import JsonLinesSpanExporter, traced_span


def test_each_span_is_one_line_with_the_fields_of_the_sdks_to_json(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "qis-worker"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent", kind=SpanKind.CONSUMER) as parent:
        link = Link(parent.get_span_context(), {"why": "batch"})
        with tracer.start_as_current_span(
            "child", links=[link], attributes={"n": 3, "keys": ("a", "b"), "ok": True}
        ) as child:
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "fenced"))
    spans = memory.get_finished_spans()
    path = tmp_path / "traces.jsonl"
    exporter = JsonLinesSpanExporter(str(path))

    exporter.export(spans)
    exporter.export(spans[:1])

    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert [json.loads(line) for line in lines] == [
        json.loads(span.to_json(indent=None)) for span in (*spans, spans[0])
    ]
    child_line = json.loads(lines[0])
    assert child_line["name"] == "child"
    assert child_line["status"] == {"status_code": "ERROR", "description": "fenced"}
    assert child_line["resource"]["attributes"]["service.name"] == "qis-worker"


def test_traced_span_follows_the_current_spans_decision() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    unsampled = NonRecordingSpan(SpanContext(1, 2, is_remote=True))
    sampled = NonRecordingSpan(SpanContext(1, 3, is_remote=True, trace_flags=TraceFlags(1)))

    with use_span(unsampled), traced_span(tracer, "data-validation") as span:
        assert span is INVALID_SPAN  # nothing drawn, nothing attached
    with use_span(sampled), traced_span(tracer, "data-validation") as span:
        assert span is INVALID_SPAN  # the current span itself is not recorded here
    with tracer.start_as_current_span("request", context=set_span_in_context(sampled)):
        with traced_span(tracer, "data-validation") as span:
            assert span.is_recording()
        with traced_span(tracer, "forced off", traced=False) as span:
            assert span is INVALID_SPAN

    assert [s.name for s in memory.get_finished_spans()] == ["data-validation", "request"]
