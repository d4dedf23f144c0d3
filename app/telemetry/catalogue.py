"""The metric contract: what the services record and emit to CloudWatch as EMF, in
namespace Custom/QIS. The one definition of the namespace and the metric names: the
exporter (`app.telemetry.metrics`) and the dashboards and alarms read them from here."""

from __future__ import annotations

from typing import Literal

import msgspec

NAMESPACE = "Custom/QIS"
INGESTION_ROUTE = "POST /v1/observations"
OBSERVATIONS_TOPIC = "qis.observations.v1"
SERVICES = ("api", "worker", "scheduler")
STATUS_CLASSES = ("2xx", "4xx", "5xx")
CACHE_LEVELS = ("L1", "L2")
LAKE_STATES = ("archived", "corrected", "unchanged")
# The downstream sinks (the `Sink` dimension of the Sink* metrics; app/services/sinks.py).
SINKS = ("eventbridge", "timestream")
# The `Operation` dimension of the DocumentStore* metrics (app/telemetry/documents.py).
DOCUMENT_OPERATIONS = ("find", "insert", "update", "delete", "createIndexes", "ping", "other")
# Every metric carries the deployment's environment (QIS_TELEMETRY__ENVIRONMENT), so
# staging and prod can share an account: the dashboards and alarms filter on it.
ENVIRONMENT_DIMENSION = "Environment"

Kind = Literal["counter", "histogram", "gauge"]


class MetricSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One metric of the contract: name, CloudWatch unit, instrument kind, dimension names
    (always `Environment` and `Service`, then the metric's own)."""

    name: str
    unit: str
    kind: Kind
    dimensions: tuple[str, ...]
    # The `Service` dimension values of the processes that record it.
    services: tuple[str, ...]
    meaning: str


CATALOGUE: tuple[MetricSpec, ...] = (
    MetricSpec(
        name="IngestionLatency",
        unit="Milliseconds",
        kind="histogram",
        dimensions=("Environment", "Service", "Route"),
        services=("api",),
        meaning="request received to broker ack",
    ),
    MetricSpec(
        name="DataIngestionRate",
        unit="Count",
        kind="counter",
        dimensions=(
            "Environment",
            "Service",
        ),
        services=("api",),
        meaning="observations accepted (delta per export interval)",
    ),
    MetricSpec(
        name="HttpRequests",
        unit="Count",
        kind="counter",
        dimensions=("Environment", "Service", "Route", "StatusClass"),
        services=("api",),
        meaning="HTTP responses by status class 2xx/4xx/5xx",
    ),
    MetricSpec(
        name="HttpLatency",
        unit="Milliseconds",
        kind="histogram",
        dimensions=("Environment", "Service", "Route"),
        services=("api",),
        meaning="HTTP request duration",
    ),
    MetricSpec(
        name="ReconciliationSuccessRate",
        unit="Percent",
        kind="gauge",
        dimensions=(
            "Environment",
            "Service",
        ),
        services=("worker",),
        meaning="successful / all reconciliations over each export interval, in %",
    ),
    MetricSpec(
        name="QualityScoreAverage",
        unit="None",
        kind="histogram",
        dimensions=(
            "Environment",
            "Service",
        ),
        services=("worker",),
        meaning="quality score in [0, 1] of each official value",
    ),
    MetricSpec(
        name="QualityScoreBySeries",
        unit="None",
        kind="histogram",
        dimensions=("Environment", "Service", "Series"),
        services=("worker",),
        meaning="quality score per series, for a bounded configured set of series",
    ),
    MetricSpec(
        name="ConsumerLag",
        unit="Count",
        kind="gauge",
        dimensions=("Environment", "Service", "Topic"),
        services=("worker",),
        meaning="records behind the end of the topic",
    ),
    MetricSpec(
        name="DeadLetterCount",
        unit="Count",
        kind="counter",
        dimensions=("Environment", "Service", "Stage"),
        services=("worker", "scheduler"),
        meaning=(
            "records sent to the dead-letter topic (worker: decode, store, reconcile, commit)"
            " and rows set aside (scheduler: window, relay, audit-relay), per stage"
        ),
    ),
    MetricSpec(
        name="CacheHitRatio",
        unit="None",
        kind="gauge",
        dimensions=("Environment", "Service", "Level"),
        services=("api",),
        meaning="hits / lookups over each export interval",
    ),
    MetricSpec(
        name="CacheFallbackCount",
        unit="Count",
        kind="counter",
        dimensions=(
            "Environment",
            "Service",
        ),
        services=("api",),
        meaning="Redis errors served from PostgreSQL instead",
    ),
    MetricSpec(
        name="RateLimitFallbackCount",
        unit="Count",
        kind="counter",
        dimensions=(
            "Environment",
            "Service",
        ),
        services=("api",),
        meaning="requests rate-limited per process because Redis did not answer",
    ),
    MetricSpec(
        name="PublicationFreshness",
        unit="Seconds",
        kind="histogram",
        dimensions=(
            "Environment",
            "Service",
        ),
        services=("scheduler",),
        meaning="snap time to official value published",
    ),
    MetricSpec(
        name="LakeHoursArchived",
        unit="Count",
        kind="counter",
        dimensions=("Environment", "Service", "State"),
        services=("scheduler",),
        meaning="hours the lake archive processed, by State: archived (first generation),"
        " corrected (a new generation), unchanged (already in the lake)",
    ),
    MetricSpec(
        name="LakeRowsArchived",
        unit="Count",
        kind="counter",
        dimensions=("Environment", "Service"),
        services=("scheduler",),
        meaning="rows (official values, observations, audit records) written to the lake",
    ),
    MetricSpec(
        name="LakeBytesArchived",
        unit="Bytes",
        kind="counter",
        dimensions=("Environment", "Service"),
        services=("scheduler",),
        meaning="object bytes written to the lake",
    ),
    MetricSpec(
        name="LakeArchiveFailures",
        unit="Count",
        kind="counter",
        dimensions=("Environment", "Service"),
        services=("scheduler",),
        meaning="archive rounds that failed (S3 or the database unreachable); retried next round",
    ),
    MetricSpec(
        name="SinkEventsDelivered",
        unit="Count",
        kind="counter",
        dimensions=("Environment", "Service", "Sink"),
        services=("scheduler",),
        meaning="events a downstream sink took, by Sink (eventbridge, timestream)",
    ),
    MetricSpec(
        name="SinkEventsRefused",
        unit="Count",
        kind="counter",
        dimensions=("Environment", "Service", "Sink"),
        services=("scheduler",),
        meaning="events a sink refused for what they are (reported, left out), by Sink",
    ),
    MetricSpec(
        name="SinkFailures",
        unit="Count",
        kind="counter",
        dimensions=("Environment", "Service", "Sink"),
        services=("scheduler",),
        meaning="batches a sink did not take (unreachable, throttled); sent again next round",
    ),
    MetricSpec(
        name="SinkDeliveryLatency",
        unit="Milliseconds",
        kind="histogram",
        dimensions=("Environment", "Service", "Sink"),
        services=("scheduler",),
        meaning="time to hand one batch to a sink, retries included",
    ),
    MetricSpec(
        name="DocumentStoreLatency",
        unit="Milliseconds",
        kind="histogram",
        dimensions=("Environment", "Service", "Operation"),
        services=("api",),
        meaning="one command to the descriptor document store (DocumentDB), by Operation",
    ),
    MetricSpec(
        name="DocumentStoreFailures",
        unit="Count",
        kind="counter",
        dimensions=("Environment", "Service", "Operation"),
        services=("api",),
        meaning="document store commands that failed (network, timeout, refused), by Operation",
    ),
)


METRIC_NAMES: tuple[str, ...] = tuple(spec.name for spec in CATALOGUE)


def metric_spec(name: str) -> MetricSpec:
    """The catalogue entry for `name`; KeyError names the unknown metric."""
    for spec in CATALOGUE:
        if spec.name == name:
            return spec
    raise KeyError(f"{name} is not in the {NAMESPACE} metric catalogue")
