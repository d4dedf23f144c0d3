"""The consume service's tracing (`ConsumeTracing`): receive and process spans.

Only sampled records are looked at closely: `record_sampled` reads the flag from the raw
header. Extracting a context and starting a span for every record, as the aiokafka
consumer instrumentation does, costs a large share of the worker's CPU for the ~90 % of
records that are not traced (benchmarks/results/telemetry-cost.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from app.ports import LogRecord

_tracer = trace.get_tracer("qis.worker")


def record_sampled(headers: Sequence[tuple[str, bytes | None]] | None) -> bool:
    """Whether a record's trace headers carry a sampled decision (W3C or X-Ray), read
    without building a context: this runs for every record."""
    for key, value in headers or ():
        if value is None:
            continue
        if key == "traceparent":
            try:
                return len(value) >= 2 and int(value[-2:], 16) & 1 == 1
            except ValueError:  # a malformed header from some producer: not sampled
                return False
        if key.lower() == "x-amzn-trace-id":
            return b"Sampled=1" in value
    return False


def receive_sampled(records: Sequence[LogRecord]) -> tuple[Context | None, list[Link]]:
    """A CONSUMER `receive` span per sampled request in the batch, in that request's trace;
    returns the context the batch's `process` span joins (the first sampled request's)
    and links to the other sampled requests' contexts.

    The records of one request (one per series it touched) carry the same headers and get
    one span, with their count.
    """
    requests: dict[tuple[tuple[str, bytes], ...], list[LogRecord]] = {}
    for record in records:
        if record_sampled(record.headers):
            requests.setdefault(record.headers, []).append(record)
    parent: Context | None = None
    links: list[Link] = []
    for headers, group in requests.items():
        context = propagate.extract({k: v.decode("latin-1") for k, v in headers})
        first = group[0]
        span = _tracer.start_span(
            f"{first.topic} receive",
            context=context,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": first.topic,
                "messaging.destination.partition.id": str(first.partition),
                "messaging.kafka.message.offset": first.offset,
                "messaging.batch.message_count": len(group),
                "messaging.operation.type": "receive",
            },
        )
        span.end()
        if parent is None:
            parent = context
        else:
            links.append(Link(trace.get_current_span(context).get_span_context()))
    return parent, links


class ConsumeSpans:
    """`ConsumeTracing` with OpenTelemetry: one `<topic> process` span per batch."""

    def __init__(self, topic: str) -> None:
        self._name = f"{topic} process"

    def record_sampled(self, headers: Sequence[tuple[str, bytes]]) -> bool:
        return record_sampled(headers)

    @contextmanager
    def batch(self, records: Sequence[LogRecord]) -> Iterator[None]:
        parent, links = receive_sampled(records)
        with _tracer.start_as_current_span(
            self._name,
            context=parent,
            links=links,
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.batch.message_count": len(records)},
        ):
            yield
