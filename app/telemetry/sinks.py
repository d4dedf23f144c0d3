"""The sink relays' span: one per batch handed to a sink, on the scheduler's tracer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace

from app.ports import SinkEvent
from app.telemetry.pipeline_tracing import links_to


@contextmanager
def sink_span(sink: str, events: Sequence[SinkEvent]) -> Iterator[None]:
    """`sink-deliver` (kind PRODUCER) with the sink (`qis.sink`) and the batch size
    (`qis.events`), linked to the traces that wrote the events."""
    tracer = trace.get_tracer("qis.scheduler")
    with tracer.start_as_current_span(
        "sink-deliver",
        kind=trace.SpanKind.PRODUCER,
        links=links_to([event.headers for event in events]),
        attributes={"qis.sink": sink, "qis.events": len(events)},
    ):
        yield
