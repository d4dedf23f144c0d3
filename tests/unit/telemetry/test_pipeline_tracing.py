"""`PipelineTracing`: the reconciliation and relay spans, with the seed's X-Ray fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler
from opentelemetry.trace import SpanKind

from app.domain.observation import Observation
from app.domain.reconciliation import all_expected_reported, reconcile
from app.domain.series import SeriesConfig
from app.domain.versions import decide_version
from app.ports import PendingMessage, Tracing
from app.telemetry import pipeline_tracing
from app.telemetry.pipeline_tracing import MAX_LINKS, PipelineTracing
from app.telemetry.tracing import XRAY_ANNOTATIONS

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
KEY = ("ETH-USD", SNAP)


def observation(source: str, value: float, observed_after: float = 0.0) -> Observation:
    return Observation(
        observation_id=f"ETH-USD:{source}",
        reference_data_id="ETH-USD",
        source=source,
        snap=SNAP,
        value=value,
        observed_at=SNAP + timedelta(seconds=observed_after),
        received_at=SNAP + timedelta(seconds=1),
    )


def tracing_with(sampler: Sampler | None = None) -> tuple[PipelineTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler or ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    return PipelineTracing(tracer, tracer), exporter


def plan_one_snap(tracing: Tracing, traced: bool = True) -> None:
    """What the reconcile service does for one snap: a stale source `c` is excluded."""
    config = SeriesConfig()
    observations = [
        observation("a", 100.0),
        observation("b", 150.0),
        observation("c", 99.99, -4000),
    ]
    with tracing.reconciliation(KEY, traced) as step:
        result = reconcile(config, SNAP, observations, previous_value=80.0)
        step.reconciled(config, observations, result)
    with tracing.quality_assessment(KEY, traced) as assessment:
        decision = decide_version(
            result,
            None,
            all_expected_reported=all_expected_reported(config, result),
            window_closed=True,
        )
        assessment.assessed(config, result, decision)


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def test_each_snap_gets_the_seeds_annotations_and_metadata() -> None:
    tracing, exporter = tracing_with()

    plan_one_snap(tracing)

    reconciliation, quality = exporter.get_finished_spans()
    assert reconciliation.name == "multi-source-reconciliation"
    assert reconciliation.kind is SpanKind.INTERNAL
    assert attributes(reconciliation) == {
        "source-count": 3,
        "conflict-resolution": "median",
        "reference-data-id": "ETH-USD",
        "snap": "2026-01-15T14:00:00Z",
        "source-values": '{"a":100.0,"b":150.0,"c":99.99}',
        "reconciliation-algorithm": (
            "median; exclude invalid (bounds), stale (> 300 s before the snap), "
            "outliers (> 50 bps from the median); min_sources 1"
        ),
        XRAY_ANNOTATIONS: ("source-count", "conflict-resolution"),
    }
    assert quality.name == "quality-assessment"
    assert attributes(quality) == {
        "quality-score": 0.6667,
        "assessment-type": "product",
        "quality-metrics": (
            '{"score":0.6667,"completeness":1.0,"timeliness":1.0,'
            '"consistency":0.6667,"validity":1.0}'
        ),
        "anomaly-detection": (
            '{"status":"suspect","threshold":0.95,"spike":false,'
            '"excluded":[{"source":"c","reason":"stale"}],"decision":"first_version"}'
        ),
        XRAY_ANNOTATIONS: ("quality-score", "assessment-type"),
    }


def test_an_untraced_snap_makes_no_span() -> None:
    tracing, exporter = tracing_with()

    plan_one_snap(tracing, traced=False)

    assert exporter.get_finished_spans() == ()


def test_annotations_are_built_only_for_a_recorded_span(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    monkeypatch.setattr(
        pipeline_tracing, "annotate", lambda span, annotations, metadata: built.extend(annotations)
    )

    plan_one_snap(tracing_with(ALWAYS_OFF)[0])
    assert built == []

    plan_one_snap(tracing_with()[0])
    assert built == ["source-count", "conflict-resolution", "quality-score", "assessment-type"]


def test_an_exception_in_a_step_is_recorded_on_its_span_and_raised() -> None:
    tracing, exporter = tracing_with()

    with pytest.raises(ValueError, match="bad data"), tracing.reconciliation(KEY, True):
        raise ValueError("bad data")

    (span,) = exporter.get_finished_spans()
    assert [event.name for event in span.events] == ["exception"]
    assert not span.status.is_ok


def message(index: int, headers: dict[str, str]) -> PendingMessage:
    return PendingMessage(
        id=index, event_id=f"e{index}", topic="ov", key="ETH-USD", payload=b"{}", headers=headers
    )


def test_the_relay_span_links_to_the_trace_each_event_was_written_in() -> None:
    tracing, exporter = tracing_with()
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    written = {"traceparent": f"00-{trace_id}-{parent}-01"}
    messages = [message(1, written), message(2, {}), message(3, {"traceparent": "garbage"})]

    with tracing.outbox_relay(messages):
        pass

    (span,) = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("outbox-relay", SpanKind.PRODUCER)
    assert attributes(span) == {"qis.events": 3}
    assert [
        (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") for link in span.links
    ] == [(trace_id, parent)]


def test_the_relay_span_keeps_a_bounded_number_of_links() -> None:
    tracing, exporter = tracing_with()
    messages = [
        message(i, {"traceparent": f"00-{i + 1:032x}-{i + 1:016x}-01"})
        for i in range(MAX_LINKS + 10)
    ]

    with tracing.outbox_relay(messages):
        pass

    (span,) = exporter.get_finished_spans()
    assert len(span.links) == MAX_LINKS
    assert attributes(span) == {"qis.events": MAX_LINKS + 10}


def test_trace_headers_carry_the_current_span() -> None:
    tracing, exporter = tracing_with()
    assert tracing.trace_headers() == {}
    assert tracing.recording() is False

    with tracing.reconciliation(KEY, True):
        headers = tracing.trace_headers()
        assert tracing.recording() is True

    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" in headers["traceparent"]
