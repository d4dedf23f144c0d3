"""Per-route root sampling rates, and parent-based decisions from incoming headers."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.settings import TelemetrySettings
from app.telemetry.tracing import (
    ROUTE_CLASS,
    PresetTraceIds,
    XRayPropagator,
    build_sampler,
    preset_trace_id,
    route_class,
)

DECISIONS = 20_000


def measured_rate(route: str) -> float:
    sampler = build_sampler(TelemetrySettings())
    ids = AwsXRayIdGenerator()
    sampled = sum(
        sampler.should_sample(
            None, ids.generate_trace_id(), "span", attributes={ROUTE_CLASS: route}
        ).decision
        is Decision.RECORD_AND_SAMPLE
        for _ in range(DECISIONS)
    )
    return sampled / DECISIONS


@pytest.mark.parametrize(("route", "expected"), [("ingestion", 0.10), ("query", 0.05)])
def test_root_rates_within_one_and_a_half_points(route: str, expected: float) -> None:
    rate = measured_rate(route)
    assert abs(rate - expected) <= 0.015, rate


def test_health_is_never_sampled() -> None:
    assert measured_rate("health") == 0.0


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/observations", "ingestion"),
        ("/v1/reference-data/ETH-USD/official-values/2026-01-15T14:00:00Z", "query"),
        ("/health/ready", "health"),
        ("/schema/openapi.json", "default"),
    ],
)
def test_route_classes(path: str, expected: str) -> None:
    assert route_class(path) == expected


ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


def decision_for(headers: dict[str, str], route: str = "health") -> Decision:
    """The decision for a request whose route alone would never be sampled (health: 0 %)."""
    context = XRayPropagator().extract(headers)
    context = TraceContextTextMapPropagator().extract(headers, context)
    sampler = build_sampler(TelemetrySettings())
    trace_id = AwsXRayIdGenerator().generate_trace_id()
    return sampler.should_sample(
        context, trace_id, "span", attributes={ROUTE_CLASS: route}
    ).decision


def test_sampled_xray_parent_is_followed_even_on_a_zero_rate_route() -> None:
    header = f"Root={ROOT};Parent={PARENT};Sampled=1"
    assert decision_for({"X-Amzn-Trace-Id": header}) is Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize("suffix", [";Sampled=0", "", ";Sampled=?"])
def test_xray_parent_without_sampled_1_is_not_sampled(suffix: str) -> None:
    header = f"Root={ROOT};Parent={PARENT}{suffix}"
    assert decision_for({"X-Amzn-Trace-Id": header}, route="ingestion") is Decision.DROP


def test_root_only_header_lets_the_route_decide() -> None:
    # An ALB adds `Root=` alone: no parent, so the per-route root sampler decides (0 % here).
    assert decision_for({"X-Amzn-Trace-Id": f"Root={ROOT}"}) is Decision.DROP
    always = build_sampler(TelemetrySettings(sample_rate_ingestion=1.0))
    context = XRayPropagator().extract({"X-Amzn-Trace-Id": f"Root={ROOT}"})
    result = always.should_sample(context, 1, "span", attributes={ROUTE_CLASS: "ingestion"})
    assert result.decision is Decision.RECORD_AND_SAMPLE


def test_w3c_sampled_parent_is_followed() -> None:
    traceparent = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
    assert decision_for({"traceparent": traceparent}) is Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize("route", ["ingestion", "query", "health", "default", "unknown"])
def test_is_sampled_answers_what_should_sample_decides(route: str) -> None:
    """The HTTP layer decides with `is_sampled`; the SDK then decides with `should_sample`
    on the same trace id: the two must agree, or a request would be drawn twice."""
    sampler = build_sampler(TelemetrySettings(sample_rate_default=0.3))
    ids = AwsXRayIdGenerator()
    for _ in range(5000):
        trace_id = ids.generate_trace_id()
        decided = sampler.should_sample(None, trace_id, "span", attributes={ROUTE_CLASS: route})
        expected = decided.decision is Decision.RECORD_AND_SAMPLE
        assert sampler.route.is_sampled(route, trace_id) is expected


def test_a_preset_trace_id_goes_to_the_next_root_span_only() -> None:
    ids = PresetTraceIds()
    with preset_trace_id(0x5759E988BD862E3FE1BE46A994272793):
        assert ids.generate_trace_id() == 0x5759E988BD862E3FE1BE46A994272793
        assert ids.generate_trace_id() != 0x5759E988BD862E3FE1BE46A994272793
    assert ids.generate_trace_id() != 0x5759E988BD862E3FE1BE46A994272793
