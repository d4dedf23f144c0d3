"""CloudWatch metrics in Embedded Metric Format through the OpenTelemetry metrics API.

`app.telemetry.emf` encodes the documents (ADOT's EMF encoding: delta counters as
numbers, exponential histograms as `Values`/`Counts` distributions, from which
CloudWatch computes p50/p95/p99); this module names the instruments, adds the request
distributions to each export and picks the destination (stdout or a file). Dimensions
stay low-cardinality: Environment (the deployment, `QIS_TELEMETRY__ENVIRONMENT`),
Service, Route, and Series only for a bounded, configured set.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from functools import partial
from itertools import groupby, repeat
from operator import call, itemgetter

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    Metric,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from app.settings import TelemetrySettings
from app.telemetry.catalogue import METRIC_NAMES, NAMESPACE
from app.telemetry.distributions import Distributions
from app.telemetry.emf import EmfExporter

# The OpenTelemetry SDK lower-cases instrument names; CloudWatch names are case-sensitive.
_CANONICAL = {name.lower(): name for name in METRIC_NAMES}


def canonical_name(name: str) -> str:
    """The catalogue's spelling of an instrument name the SDK lower-cased."""
    return _CANONICAL.get(name, name)


_DISTRIBUTIONS_SCOPE = InstrumentationScope("qis.distributions")


def with_distributions(data: MetricsData, extra: list[Metric]) -> MetricsData:
    """`data` plus `extra` as one more scope of its first resource (the process's)."""
    if not extra or not data.resource_metrics:
        return data
    first, *rest = data.resource_metrics
    scope = ScopeMetrics(scope=_DISTRIBUTIONS_SCOPE, metrics=extra, schema_url="")
    merged = ResourceMetrics(
        resource=first.resource,
        scope_metrics=[*first.scope_metrics, scope],
        schema_url=first.schema_url,
    )
    return MetricsData(resource_metrics=[merged, *rest])


def _drained(distributions: Distributions, data: MetricsData) -> MetricsData:
    return with_distributions(data, distributions.collect())


class StdoutEmfExporter(EmfExporter):
    """EMF on stdout with the catalogue's metric names, plus the given `distributions`'
    counts since the previous export.

    The distributions are drained only into an export that has the SDK's metrics: every
    request that records one also counts HttpRequests, so none waits more than an interval.
    """

    def __init__(
        self,
        namespace: str = NAMESPACE,
        distributions: Distributions | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(
            namespace,
            name_of=canonical_name,
            extra=None if distributions is None else partial(_drained, distributions),
            path=path,
        )


class FileEmfExporter(StdoutEmfExporter):
    """The same EMF documents, one per line, appended to a file instead of stdout."""

    def __init__(
        self, path: str, namespace: str = NAMESPACE, distributions: Distributions | None = None
    ) -> None:
        super().__init__(namespace, distributions, path)


def emf_exporter(
    settings: TelemetrySettings, distributions: Distributions | None = None
) -> StdoutEmfExporter | None:
    """The configured EMF destination, or None when metrics are off."""
    if settings.metrics_exporter == "stdout":
        return StdoutEmfExporter(distributions=distributions)
    if settings.metrics_exporter == "file":
        return FileEmfExporter(settings.metrics_file, distributions=distributions)
    return None


def build_meter_provider(
    settings: TelemetrySettings,
    resource: Resource,
    extra_readers: list[MetricReader] | None = None,
    distributions: Distributions | None = None,
) -> MeterProvider:
    """A MeterProvider exporting EMF, with `distributions`, every `metrics_interval_seconds`
    (plus readers for tests)."""
    readers: list[MetricReader] = list(extra_readers or [])
    exporter = emf_exporter(settings, distributions)
    if exporter is not None:
        readers.append(
            PeriodicExportingMetricReader(
                exporter, export_interval_millis=int(settings.metrics_interval_seconds * 1000)
            )
        )
    # EMF carries no exemplars: the default trace-based filter would only cost a context
    # lookup per measurement.
    return MeterProvider(
        resource=resource, metric_readers=readers, exemplar_filter=AlwaysOffExemplarFilter()
    )


_MAX_CACHED_ROUTES = 1000
_METHOD_TEMPLATE_STATUS = itemgetter(0, 1, 2)
_METHOD_TEMPLATE = itemgetter(0, 1)
_MILLISECONDS = itemgetter(3)


def http_route(method: str, template: str) -> str:
    """The Route dimension of an HTTP request: `METHOD /path/{template}`, or `METHOD
    unmatched` (`template` "") for a path no route matched: bounded cardinality."""
    return f"{method} {template or 'unmatched'}"


# Requests buffered before the recording request folds them into the counts: bounds the
# buffer's memory whether or not a reader collects.
FOLD_AT = 1024


class _IntervalShare:
    """Successes out of all events, per key, observed as `scale * successes / all` once per
    collection interval (an observable gauge's callback). Recording is two integer
    increments, where a 0/1 histogram would take the SDK's per-measurement path for every
    event (benchmarks/results/telemetry-cost.md). A key without events
    since the previous collection observes nothing."""

    def __init__(self, scale: float, attributes: Callable[[str], dict[str, str]]) -> None:
        self._scale = scale
        self._attributes = attributes
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}  # key -> [successes, all]

    def add(self, key: str, success: bool) -> None:
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0, 0]
            counts[0] += success
            counts[1] += 1

    def collect(self, _: CallbackOptions) -> list[Observation]:
        with self._lock:
            pending, self._counts = self._counts, {}
        return [
            Observation(self._scale * successes / total, self._attributes(key))
            for key, (successes, total) in pending.items()
        ]


class QisMetrics:
    """The platform's instruments; names and units are the dashboards' and alarms' contract.

    Per-request recording is on the hot path of every HTTP request, so it avoids work
    that does not change the exported data: a request is one `deque.append` of
    `(method, template, status, milliseconds)` (atomic, no lock); every `FOLD_AT`
    requests, and whenever a reader collects, the buffer is folded: HttpRequests counted
    per route and status class (added to the OpenTelemetry counter when a reader
    collects, one `add(n)` per route and status class; the ConsumerLag callback runs
    before any instrument is collected) and HttpLatency counted in `distributions`.
    Attribute dicts are built when a reader collects, not per request. An interval
    without requests still exports nothing, as with a per-request `add(1)`.

    HttpLatency and IngestionLatency, one value per request, are counted in
    `distributions`, which the EMF exporter given the same object drains at each export
    (after the buffer is folded: `Distributions.before_collect`). Without
    `distributions` (telemetry off, unit tests of other instruments) they are not
    recorded.
    """

    def __init__(
        self,
        meter: Meter,
        service: str,
        quality_series: frozenset[str] = frozenset(),
        distributions: Distributions | None = None,
        environment: str = "local",
    ):
        self.service = service
        # Every series carries both: the dashboards and alarms of one environment filter
        # on Environment, so staging and prod can write to one account.
        self._base = {"Environment": environment, "Service": service}
        self._quality_series = quality_series
        self._lag: dict[str, int] = {}
        self._status_attributes: dict[tuple[str, int], dict[str, str]] = {}
        self._pending_lock = threading.Lock()
        self._pending_requests: dict[tuple[str, int], int] = {}
        self._requests: deque[tuple[str, str, int, float]] = deque()
        self._fold_lock = threading.Lock()
        if distributions is not None:
            distributions.before_collect(self._fold)
        self._ingestion_latency = (
            None
            if distributions is None
            else distributions.histogram(
                "IngestionLatency",
                unit="ms",
                description="request received to broker ack",
                attributes=self._route,
            )
        )
        self._ingested = meter.create_counter(
            "DataIngestionRate", unit="Count", description="observations accepted"
        )
        self._http_requests = meter.create_counter("HttpRequests", unit="Count")
        self._http_latency = (
            None
            if distributions is None
            else distributions.histogram("HttpLatency", unit="ms", attributes=self._route)
        )
        self._reconciliations = _IntervalShare(100.0, lambda _: self._base)
        meter.create_observable_gauge(
            "ReconciliationSuccessRate",
            callbacks=[self._reconciliations.collect],
            unit="Percent",
            description="successful / all reconciliations since the previous collection",
        )
        self._quality = meter.create_histogram("QualityScoreAverage", unit="1")
        self._quality_by_series = meter.create_histogram("QualityScoreBySeries", unit="1")
        self._dead_letters = meter.create_counter("DeadLetterCount", unit="Count")
        self._cache_lookups = _IntervalShare(1.0, lambda level: {**self._base, "Level": level})
        self._cache_fallbacks = meter.create_counter("CacheFallbackCount", unit="Count")
        self._rate_limit_fallbacks = meter.create_counter("RateLimitFallbackCount", unit="Count")
        self._freshness = meter.create_histogram(
            "PublicationFreshness", unit="s", description="snap to published"
        )
        meter.create_observable_gauge("ConsumerLag", callbacks=[self._collect], unit="Count")
        self._lake_hours = meter.create_counter("LakeHoursArchived", unit="Count")
        self._lake_rows = meter.create_counter("LakeRowsArchived", unit="Count")
        self._lake_bytes = meter.create_counter("LakeBytesArchived", unit="Bytes")
        self._lake_failures = meter.create_counter("LakeArchiveFailures", unit="Count")
        self._sink_events = meter.create_counter("SinkEventsDelivered", unit="Count")
        self._sink_refused = meter.create_counter("SinkEventsRefused", unit="Count")
        self._sink_failures = meter.create_counter("SinkFailures", unit="Count")
        self._sink_latency = meter.create_histogram(
            "SinkDeliveryLatency", unit="ms", description="one batch handed to a sink"
        )
        self._document_latency = meter.create_histogram(
            "DocumentStoreLatency", unit="ms", description="one document store command"
        )
        self._document_failures = meter.create_counter("DocumentStoreFailures", unit="Count")
        meter.create_observable_gauge(
            "CacheHitRatio",
            callbacks=[self._cache_lookups.collect],
            unit="1",
            description="hits / lookups since the previous collection",
        )

    def ingestion_latency(self, route: str, milliseconds: float) -> None:
        if self._ingestion_latency is not None:
            self._ingestion_latency.record(route, milliseconds)

    def observations_accepted(self, count: int) -> None:
        self._ingested.add(count, self._base)

    def _route(self, route: str) -> dict[str, str]:
        return {**self._base, "Route": route}

    def http_request(self, method: str, template: str, status: int, milliseconds: float) -> None:
        """One HTTP request: `template` is its route's path template, "" when no route
        matched (counted as `METHOD unmatched`)."""
        requests = self._requests
        requests.append((method, template, status, milliseconds))
        if len(requests) >= FOLD_AT:
            self._fold()

    def http_request_buffer(
        self,
    ) -> tuple[deque[tuple[str, str, int, float]], Callable[[], None]]:
        """What `http_request` does, in pieces for a caller that inlines it (the HTTP
        middleware's untraced path): the buffer to append `(method, template, status,
        milliseconds)` to, and the fold to call when it holds `FOLD_AT` requests or more."""
        return self._requests, self._fold

    def _fold(self) -> None:
        """Count the buffered requests, from any thread: `http_request` appends without
        a lock and each `popleft` takes one request exactly once, so a fold racing an
        append loses nothing; folds take turns. Per request, only C-level iteration:
        the Python loops run once per route (and status), not once per request."""
        requests = self._requests
        with self._fold_lock:
            taken = list(map(call, repeat(requests.popleft, len(requests))))
        if not taken:
            return
        counted = Counter(map(_METHOD_TEMPLATE_STATUS, taken))
        with self._pending_lock:
            pending = self._pending_requests
            for (method, template, status), count in counted.items():
                key = (http_route(method, template), status // 100)
                pending[key] = pending.get(key, 0) + count
        if self._http_latency is not None:
            taken.sort(key=_METHOD_TEMPLATE)
            for (method, template), group in groupby(taken, _METHOD_TEMPLATE):
                self._http_latency.record_values(
                    http_route(method, template), list(map(_MILLISECONDS, group))
                )

    def reconciliation(self, succeeded: bool) -> None:
        self._reconciliations.add("", succeeded)

    def quality_score(self, score: float, series: str) -> None:
        self._quality.record(score, self._base)
        if series in self._quality_series:
            self._quality_by_series.record(score, {**self._base, "Series": series})

    def dead_letters(self, count: int, stage: str) -> None:
        """Records (or rows) set aside at `stage` (see app/domain/dead_letter.py)."""
        self._dead_letters.add(count, {**self._base, "Stage": stage})

    def cache_lookup(self, level: str, hit: bool) -> None:
        self._cache_lookups.add(level, hit)

    def cache_fallback(self) -> None:
        self._cache_fallbacks.add(1, self._base)

    def rate_limit_fallback(self) -> None:
        self._rate_limit_fallbacks.add(1, self._base)

    def publication_freshness(self, seconds: float) -> None:
        self._freshness.record(seconds, self._base)

    def consumer_lag(self, topic: str, lag: int) -> None:
        self._lag[topic] = lag

    def lake_hour_archived(self, state: str, rows: int, size: int, seconds: float) -> None:
        """One hour the lake archive processed (`seconds` goes to its span, not here)."""
        self._lake_hours.add(1, {**self._base, "State": state})
        if state != "unchanged":
            self._lake_rows.add(rows, self._base)
            self._lake_bytes.add(size, self._base)

    def lake_archive_failure(self) -> None:
        self._lake_failures.add(1, self._base)

    def sink_delivered(self, sink: str, events: int, refused: int, seconds: float) -> None:
        attributes = {**self._base, "Sink": sink}
        self._sink_events.add(events - refused, attributes)
        if refused:
            self._sink_refused.add(refused, attributes)
        self._sink_latency.record(seconds * 1000.0, attributes)

    def sink_failed(self, sink: str) -> None:
        self._sink_failures.add(1, {**self._base, "Sink": sink})

    def document_command(self, operation: str, milliseconds: float, failed: bool) -> None:
        attributes = {**self._base, "Operation": operation}
        self._document_latency.record(milliseconds, attributes)
        if failed:
            self._document_failures.add(1, attributes)

    def flush(self) -> None:
        """Add the requests counted since the last flush to the HttpRequests counter."""
        self._fold()
        with self._pending_lock:
            pending, self._pending_requests = self._pending_requests, {}
        for (route, status_class), count in pending.items():
            attributes = self._status_attributes.get((route, status_class))
            if attributes is None:
                if len(self._status_attributes) > _MAX_CACHED_ROUTES:
                    self._status_attributes.clear()
                attributes = self._status_attributes[(route, status_class)] = {
                    **self._base,
                    "Route": route,
                    "StatusClass": f"{status_class}xx",
                }
            self._http_requests.add(count, attributes)

    def _collect(self, _: CallbackOptions) -> list[Observation]:
        # Runs when a reader collects, before the instruments are read.
        self.flush()
        return [
            Observation(lag, {**self._base, "Topic": topic}) for topic, lag in self._lag.items()
        ]


def noop_metrics(service: str) -> QisMetrics:
    """Instruments on the API's no-op meter: for telemetry off and for unit tests."""
    return QisMetrics(metrics.NoOpMeter("qis"), service)
