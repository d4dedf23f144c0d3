"""One call wires tracing, metrics and library instrumentation for a process."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.settings import TelemetrySettings
from app.telemetry.distributions import Distributions
from app.telemetry.metrics import QisMetrics, build_meter_provider, noop_metrics
from app.telemetry.tracing import build_tracer_provider, install_propagators


@dataclass
class Telemetry:
    """What a process uses to trace and measure; `enabled` is False when both are off."""

    service: str
    metrics: QisMetrics
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    memory_spans: InMemorySpanExporter | None = None
    instrumented: list[object] = field(default_factory=list)

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    def shutdown(self) -> None:
        """Flush and stop exporters (idempotent)."""
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
            self.meter_provider = None
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def disabled(service: str) -> Telemetry:
    """No tracing, no-op metrics: the baseline the telemetry-cost benchmark compares against."""
    return Telemetry(service=service, metrics=noop_metrics(service))


def setup_telemetry(
    settings: TelemetrySettings,
    service: str,
    *,
    metric_readers: list[MetricReader] | None = None,
    memory_spans: InMemorySpanExporter | None = None,
) -> Telemetry:
    """Install global providers and instrument asyncpg, redis and aiokafka (once per process)."""
    # Tracing runs whenever telemetry is on, even with no exporter: trace ids, sampling and
    # the X-Amzn-Trace-Id header do not depend on where spans go.
    tracing_on = settings.enabled
    metrics_on = settings.enabled and (settings.metrics_exporter != "none" or bool(metric_readers))
    if not tracing_on and not metrics_on:
        return disabled(service)
    resource = Resource.create(
        {
            "service.name": f"{settings.service_name}-{service}",
            "deployment.environment": settings.environment,
            # One identity per process: a pod may run several api processes, each with its
            # own instruments and exporter (app.entrypoints.api_processes).
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
            "process.pid": os.getpid(),
        }
    )
    telemetry = Telemetry(service=service, metrics=noop_metrics(service))
    if metrics_on:
        distributions = Distributions()
        telemetry.meter_provider = build_meter_provider(
            settings, resource, metric_readers, distributions
        )
        metrics.set_meter_provider(telemetry.meter_provider)
        telemetry.metrics = QisMetrics(
            telemetry.meter_provider.get_meter("qis"),
            service,
            distributions=distributions,
            environment=settings.environment,
        )
    if tracing_on:
        install_propagators()
        memory = memory_spans or (
            InMemorySpanExporter() if settings.traces_exporter == "memory" else None
        )
        telemetry.memory_spans = memory
        telemetry.tracer_provider = build_tracer_provider(settings, resource, memory)
        trace.set_tracer_provider(telemetry.tracer_provider)
        telemetry.instrumented = _instrument_libraries(telemetry.tracer_provider)
    return telemetry


def _instrument_libraries(provider: TracerProvider) -> list[object]:
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentors: list[object] = []
    candidates = (
        AsyncPGInstrumentor(),  # type: ignore[no-untyped-call]
        RedisInstrumentor(),
        AIOKafkaInstrumentor(),
        PymongoInstrumentor(),  # the descriptor store's commands (DocumentDB)
    )
    for instrumentor in candidates:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
        instrumentors.append(instrumentor)
    _keep_kafka_producer_spans_only()
    return instrumentors


def _keep_kafka_producer_spans_only() -> None:
    """Undo the aiokafka instrumentation's consumer side; its producer side stays.

    It extracts a context and starts a span for every consumed record, traced or not
    (a large share of the worker's CPU: benchmarks/results/telemetry-cost.md). The worker
    makes `receive` spans itself, for the records of sampled requests only
    (`app.telemetry.consume_tracing.receive_sampled`).
    """
    import aiokafka
    from opentelemetry.instrumentation.utils import unwrap

    for method in ("getone", "getmany"):
        if hasattr(getattr(aiokafka.AIOKafkaConsumer, method), "__wrapped__"):
            unwrap(aiokafka.AIOKafkaConsumer, method)
