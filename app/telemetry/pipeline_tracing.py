"""`app.ports.Tracing` on OpenTelemetry: the reconciliation pipeline's spans for X-Ray.

Per snap, two custom spans (X-Ray subsegments through ADOT), as docs/tracing.md lists them:

- `multi-source-reconciliation`: annotations `source-count`, `conflict-resolution`;
  metadata `reference-data-id`, `snap`, `source-values`, `reconciliation-algorithm`;
- `quality-assessment`: annotations `quality-score`, `assessment-type`; metadata
  `quality-metrics`, `anomaly-detection`;

and the relay's PRODUCER span `outbox-relay` (`qis.events`: how many events), linked to
the trace each event was written in. Annotations are built only for a recorded span.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

import msgspec
from opentelemetry import propagate, trace
from opentelemetry.trace import Link

from app.domain.observation import Observation
from app.domain.reconciliation import Reconciliation
from app.domain.series import SeriesConfig
from app.domain.timestamps import rfc3339
from app.domain.versions import VersionDecision
from app.ports import OutboxMessage, QualityStep, ReconciliationStep, SnapKey
from app.telemetry.tracing import annotate

_json = msgspec.json.Encoder()
# A span keeps a bounded number of links.
MAX_LINKS = 64


class _Untraced:
    """The step of a snap that is not traced: nothing to record."""

    __slots__ = ()

    def reconciled(
        self,
        config: SeriesConfig,
        observations: Sequence[Observation],
        result: Reconciliation,
    ) -> None:
        return None

    def assessed(
        self, config: SeriesConfig, result: Reconciliation, decision: VersionDecision
    ) -> None:
        return None


# nullcontext is reusable: one for every untraced step.
_UNTRACED = nullcontext(_Untraced())


class _Reconciliation:
    __slots__ = ("_key", "_span")

    def __init__(self, span: trace.Span, key: SnapKey) -> None:
        self._span = span
        self._key = key

    def reconciled(
        self,
        config: SeriesConfig,
        observations: Sequence[Observation],
        result: Reconciliation,
    ) -> None:
        if not self._span.is_recording():
            return
        series_id, snap = self._key
        annotate(
            self._span,
            {
                "source-count": len(result.sources_reporting),
                "conflict-resolution": config.method,
            },
            {
                "reference-data-id": series_id,
                "snap": rfc3339(snap),
                "source-values": _json.encode({o.source: o.value for o in observations}).decode(),
                "reconciliation-algorithm": (
                    f"{config.method}; exclude invalid (bounds), stale "
                    f"(> {config.staleness_seconds} s before the snap), outliers "
                    f"(> {config.tolerance_bps:g} bps from the median); "
                    f"min_sources {config.min_sources}"
                ),
            },
        )


class _Quality:
    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def assessed(
        self, config: SeriesConfig, result: Reconciliation, decision: VersionDecision
    ) -> None:
        if not self._span.is_recording():
            return
        annotate(
            self._span,
            {
                "quality-score": result.quality.score,
                "assessment-type": config.quality_policy.formula,
            },
            {
                "quality-metrics": _json.encode(result.quality).decode(),
                "anomaly-detection": _json.encode(
                    {
                        "status": result.status,
                        "threshold": config.quality_policy.threshold,
                        "spike": result.quality.validity < 1.0,
                        "excluded": result.sources_excluded,
                        "decision": decision.reason,
                    }
                ).decode(),
            },
        )


class PipelineTracing:
    """The worker's and the scheduler's spans, on the global tracer provider unless
    tracers are given (tests). Reconciliation spans use `qis.worker` (the worker and
    the scheduler's window closing alike), the relay's `qis.scheduler`."""

    def __init__(
        self, tracer: trace.Tracer | None = None, relay_tracer: trace.Tracer | None = None
    ) -> None:
        self._tracer = tracer or trace.get_tracer("qis.worker")
        self._relay_tracer = relay_tracer or trace.get_tracer("qis.scheduler")

    def recording(self) -> bool:
        return trace.get_current_span().is_recording()

    def reconciliation(
        self, key: SnapKey, traced: bool
    ) -> AbstractContextManager[ReconciliationStep]:
        if not traced:
            return _UNTRACED
        return self._reconciliation(key)

    @contextmanager
    def _reconciliation(self, key: SnapKey) -> Iterator[ReconciliationStep]:
        with self._tracer.start_as_current_span("multi-source-reconciliation") as span:
            yield _Reconciliation(span, key)

    def quality_assessment(self, key: SnapKey, traced: bool) -> AbstractContextManager[QualityStep]:
        if not traced:
            return _UNTRACED
        return self._quality_assessment()

    @contextmanager
    def _quality_assessment(self) -> Iterator[QualityStep]:
        with self._tracer.start_as_current_span("quality-assessment") as span:
            yield _Quality(span)

    @contextmanager
    def outbox_relay(self, messages: Sequence[OutboxMessage]) -> Iterator[None]:
        with self._relay_tracer.start_as_current_span(
            "outbox-relay", kind=trace.SpanKind.PRODUCER, links=_links(messages)
        ) as span:
            span.set_attribute("qis.events", len(messages))
            yield

    def trace_headers(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier


def _links(messages: Sequence[OutboxMessage]) -> list[Link]:
    return links_to([message.headers for message in messages[:MAX_LINKS]])


def links_to(carriers: Sequence[Mapping[str, str]]) -> list[Link]:
    """Links to the traces in these carriers (stored trace headers), at most MAX_LINKS."""
    links: list[Link] = []
    for carrier in carriers[:MAX_LINKS]:
        context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
        if context.is_valid:
            links.append(Link(context))
    return links
