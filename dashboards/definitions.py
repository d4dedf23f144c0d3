"""The QIS dashboards: the seed's overview, and the golden signals of each service.

Threshold lines are read from the alarm definitions, so a graph always shows the line
its alarm really uses. Like the alarms, the dashboards exist once per environment:
`qis-${Environment}-<Name>`, every Custom/QIS metric filtered by `Environment`.
Regenerate `dashboards/generated/` after editing: `python -m dashboards.generate`.
"""

from __future__ import annotations

from alarms import definitions as alarms
from alarms.definitions import (
    ENVIRONMENT_FILTER,
    EVENT_STORE_CLUSTER,
    LOAD_BALANCER,
    MSK_CLUSTER,
    REDIS_CLUSTER,
)
from app.telemetry.catalogue import (
    CACHE_LEVELS,
    INGESTION_ROUTE,
    LAKE_STATES,
    NAMESPACE,
    OBSERVATIONS_TOPIC,
    SINKS,
)
from ops.alarm import Dimension, Metric, MetricAlarm
from ops.dashboard import (
    AlarmStatusWidget,
    Dashboard,
    ExpressionLine,
    MetricLine,
    MetricWidget,
    TextWidget,
    Threshold,
)
from ops.naming import ENVIRONMENT, prefixed

P50, P95, P99 = "#1f77b4", "#ff7f0e", "#9467bd"


def _custom(name: str, **dimensions: str) -> Metric:
    return Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions=(
            ENVIRONMENT_FILTER,
            *(Dimension(name=k, value=v) for k, v in dimensions.items()),
        ),
    )


def _aws(namespace: str, name: str, dimension: str, value: str) -> Metric:
    return Metric(
        namespace=namespace,
        metric_name=name,
        dimensions=(Dimension(name=dimension, value=value),),
    )


def _threshold(alarm: MetricAlarm, unit: str) -> Threshold:
    value = f"{alarm.threshold:g}"
    return Threshold(
        value=alarm.threshold, label=f"alarm threshold {value}{unit}", alarm=alarm.alarm_name
    )


INGESTION_LATENCY = _custom("IngestionLatency", Service="api", Route=INGESTION_ROUTE)
HTTP_LATENCY = _custom("HttpLatency", Service="api", Route=INGESTION_ROUTE)
INGESTION_RATE = _custom("DataIngestionRate", Service="api")
RECONCILIATION = _custom("ReconciliationSuccessRate", Service="worker")
QUALITY = _custom("QualityScoreAverage", Service="worker")
FRESHNESS = _custom("PublicationFreshness", Service="scheduler")

ALARM_STATUS = AlarmStatusWidget(
    title="Alarms", alarm_names=tuple(a.alarm_name for a in alarms.ALARMS)
)


# One line per (Service, Stage) series the alarm sums, labelled with the stage: the line
# above 0 is the cause (the alarm's description says what each stage means).
DEAD_LETTERS_WIDGET = MetricWidget(
    title=alarms.DEAD_LETTERS_WIDGET,
    lines=tuple(
        MetricLine(metric=source.metric(), stat="Sum", label=source.stage)
        for source in alarms.DEAD_LETTER_SOURCES
    ),
    period=60,
    y_label="records or rows per minute",
    thresholds=(
        Threshold(
            value=alarms.DEAD_LETTERS.threshold,
            label="alarm: anything set aside, any stage (> 0)",
            alarm=alarms.DEAD_LETTERS.alarm_name,
        ),
    ),
    width=24,
)


def _latency_percentiles(metric: Metric) -> tuple[MetricLine, ...]:
    return (
        MetricLine(metric=metric, stat="p50", label="p50", color=P50),
        MetricLine(metric=metric, stat="p95", label="p95", color=P95),
        MetricLine(metric=metric, stat="p99", label="p99", color=P99),
    )


INGESTION_LATENCY_WIDGET = MetricWidget(
    title=f"Ingestion latency, {INGESTION_ROUTE} (received to broker ack)",
    lines=(
        *_latency_percentiles(INGESTION_LATENCY),
        MetricLine(
            metric=INGESTION_LATENCY,
            stat="p95",
            label="p95 over 5 min (what the alarm evaluates)",
            period=alarms.HIGH_INGESTION_LATENCY.period,
            color="#2ca02c",
        ),
    ),
    period=60,
    y_label="milliseconds",
    thresholds=(_threshold(alarms.HIGH_INGESTION_LATENCY, " ms"),),
)


def _requests(status_class: str) -> Metric:
    return _custom("HttpRequests", Service="api", Route=INGESTION_ROUTE, StatusClass=status_class)


def _five_xx_ratio_widget(period: int) -> MetricWidget:
    return MetricWidget(
        title=f"HTTP 5xx ratio, {INGESTION_ROUTE}",
        lines=(
            ExpressionLine(
                expression=alarms.FIVE_XX_RATIO_EXPRESSION, label="5xx responses (%)", id="ratio"
            ),
            *(
                MetricLine(metric=_requests(c), stat="Sum", label=c, id=f"m{c}", visible=False)
                for c in ("2xx", "4xx", "5xx")
            ),
        ),
        period=period,
        y_label="percent of responses",
        thresholds=(_threshold(alarms.INGESTION_5XX_RATIO, " %"),),
    )


GOLDEN_SIGNALS = Dashboard(
    name=prefixed("GoldenSignals"),
    widgets=(
        ALARM_STATUS,
        TextWidget(markdown="## api - ingestion and queries (latency, traffic, errors, cache)"),
        INGESTION_LATENCY_WIDGET,
        MetricWidget(
            title="Observations accepted (DataIngestionRate)",
            lines=(MetricLine(metric=INGESTION_RATE, stat="Sum", label="observations"),),
            period=60,
            y_label="observations per minute",
            thresholds=(_threshold(alarms.NO_INGESTION, " (no-ingestion alarm)"),),
        ),
        MetricWidget(
            title=f"HTTP responses by status class, {INGESTION_ROUTE}",
            lines=tuple(
                MetricLine(metric=_requests(c), stat="Sum", label=c) for c in ("2xx", "4xx", "5xx")
            ),
            period=60,
            y_label="responses per minute",
        ),
        _five_xx_ratio_widget(period=300),
        MetricWidget(
            title=f"HTTP latency, {INGESTION_ROUTE} (whole request)",
            lines=_latency_percentiles(HTTP_LATENCY),
            period=60,
            y_label="milliseconds",
        ),
        MetricWidget(
            title="Cache hit ratio by level",
            lines=tuple(
                MetricLine(
                    metric=_custom("CacheHitRatio", Service="api", Level=level),
                    stat="Average",
                    label=f"{level} hit ratio",
                )
                for level in CACHE_LEVELS
            ),
            period=60,
            y_label="hit ratio (0 to 1)",
            y_max=1.0,
        ),
        MetricWidget(
            title="Redis fallbacks: reads served from PostgreSQL, rate limits per process",
            lines=(
                MetricLine(
                    metric=_custom("CacheFallbackCount", Service="api"),
                    stat="Sum",
                    label="cache fallbacks",
                ),
                MetricLine(
                    metric=_custom("RateLimitFallbackCount", Service="api"),
                    stat="Sum",
                    label="rate-limit fallbacks",
                ),
            ),
            period=60,
            y_label="fallbacks per minute",
        ),
        MetricWidget(
            title="Descriptor store (DocumentDB): p95 per command, failed commands",
            lines=(
                *(
                    MetricLine(
                        metric=_custom("DocumentStoreLatency", Service="api", Operation=op),
                        stat="p95",
                        label=f"{op} p95 ms",
                    )
                    for op in ("find", "insert", "update")
                ),
                *(
                    MetricLine(
                        metric=_custom("DocumentStoreFailures", Service="api", Operation=op),
                        stat="Sum",
                        label=f"{op} failed",
                    )
                    for op in ("find", "update")
                ),
            ),
            period=300,
            y_label="ms; failures per 5 minutes",
        ),
        TextWidget(markdown="## worker - consumption, reconciliation, quality"),
        MetricWidget(
            title=f"Consumer lag, {OBSERVATIONS_TOPIC} (worst worker)",
            lines=(
                MetricLine(
                    metric=_custom("ConsumerLag", Service="worker", Topic=OBSERVATIONS_TOPIC),
                    stat="Maximum",
                    label="lag (records)",
                ),
            ),
            period=60,
            y_label="records behind",
            thresholds=(_threshold(alarms.CONSUMER_LAG_HIGH, " records"),),
        ),
        MetricWidget(
            title="Reconciliation success rate",
            lines=(MetricLine(metric=RECONCILIATION, stat="Average", label="success"),),
            period=300,
            y_label="percent of reconciliations",
            thresholds=(_threshold(alarms.LOW_RECONCILIATION_SUCCESS, " %"),),
            y_min=None,
        ),
        MetricWidget(
            title="Quality score, average of official values",
            lines=(MetricLine(metric=QUALITY, stat="Average", label="average score"),),
            period=600,
            y_label="quality score (0 to 1)",
            thresholds=(_threshold(alarms.LOW_DATA_QUALITY, ""),),
            y_min=None,
        ),
        MetricWidget(
            title="Quality score by series",
            lines=(
                ExpressionLine(
                    expression=(
                        "SEARCH('{Custom/QIS,Environment,Service,Series} "
                        f'MetricName="QualityScoreBySeries" Environment="{ENVIRONMENT}"\', '
                        "'Average', 600)"
                    ),
                    label="",
                    id="series",
                ),
            ),
            period=600,
            y_label="quality score (0 to 1)",
            thresholds=(Threshold(value=0.95, label="quality SLO 0.95"),),
            y_min=None,
        ),
        TextWidget(markdown="## scheduler - publication"),
        MetricWidget(
            title="Publication freshness (snap to published)",
            lines=(
                MetricLine(metric=FRESHNESS, stat="p50", label="p50", color=P50),
                MetricLine(metric=FRESHNESS, stat="p95", label="p95", color=P95),
                MetricLine(metric=FRESHNESS, stat="Maximum", label="max", color=P99),
            ),
            period=300,
            y_label="seconds",
            thresholds=(_threshold(alarms.STALE_PUBLICATION, " s"),),
        ),
        TextWidget(markdown="## scheduler - data lake archive"),
        MetricWidget(
            title="Lake hours by state, and failed archive rounds (retried next round)",
            lines=(
                *(
                    MetricLine(
                        metric=_custom("LakeHoursArchived", Service="scheduler", State=state),
                        stat="Sum",
                        label=f"hours {state}",
                    )
                    for state in LAKE_STATES
                ),
                MetricLine(
                    metric=_custom("LakeArchiveFailures", Service="scheduler"),
                    stat="Sum",
                    label="failed rounds",
                ),
            ),
            period=300,
            y_label="per 5 minutes",
        ),
        MetricWidget(
            title="Lake archive volume",
            lines=(
                MetricLine(
                    metric=_custom("LakeRowsArchived", Service="scheduler"),
                    stat="Sum",
                    label="rows",
                ),
                MetricLine(
                    metric=_custom("LakeBytesArchived", Service="scheduler"),
                    stat="Sum",
                    label="bytes",
                ),
            ),
            period=300,
            y_label="per 5 minutes",
        ),
        TextWidget(markdown="## scheduler - downstream sinks (EventBridge, Timestream)"),
        MetricWidget(
            title="Sink events delivered and refused, failed batches (retried)",
            lines=tuple(
                MetricLine(
                    metric=_custom(name, Service="scheduler", Sink=sink),
                    stat="Sum",
                    label=f"{sink} {label}",
                )
                for sink in SINKS
                for name, label in (
                    ("SinkEventsDelivered", "delivered"),
                    ("SinkEventsRefused", "refused"),
                    ("SinkFailures", "failed batches"),
                )
            ),
            period=300,
            y_label="per 5 minutes",
        ),
        MetricWidget(
            title="Sink batch latency (retries included)",
            lines=tuple(
                MetricLine(
                    metric=_custom("SinkDeliveryLatency", Service="scheduler", Sink=sink),
                    stat="p95",
                    label=f"{sink} p95",
                )
                for sink in SINKS
            ),
            period=300,
            y_label="milliseconds",
        ),
        TextWidget(markdown="## dead letters - records and rows set aside, by service and stage"),
        DEAD_LETTERS_WIDGET,
    ),
)

# The seed's "QIS-DataManagement-Overview" (here qis-<environment>-DataManagement-Overview)
# keeps its metrics, split into one graph per unit:
# one graph mixing bytes/s, connections, counts and percentages is unreadable.
OVERVIEW = Dashboard(
    name=prefixed("DataManagement-Overview"),
    widgets=(
        ALARM_STATUS,
        MetricWidget(
            title="Load balancer: requests",
            lines=(
                MetricLine(
                    metric=_aws(
                        "AWS/ApplicationELB", "RequestCount", "LoadBalancer", LOAD_BALANCER
                    ),
                    stat="Sum",
                    label="requests",
                ),
            ),
            period=300,
            y_label="requests per 5 minutes",
        ),
        MetricWidget(
            title="Load balancer: target response time",
            lines=tuple(
                MetricLine(
                    metric=_aws(
                        "AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", LOAD_BALANCER
                    ),
                    stat=stat,
                    label=stat,
                )
                for stat in ("Average", "p95")
            ),
            period=300,
            y_label="seconds",
        ),
        MetricWidget(
            title="Aurora event store: database connections",
            lines=(
                MetricLine(
                    metric=_aws(
                        "AWS/RDS", "DatabaseConnections", "DBClusterIdentifier", EVENT_STORE_CLUSTER
                    ),
                    stat="Average",
                    label="connections",
                ),
            ),
            period=300,
            y_label="connections",
        ),
        MetricWidget(
            title="ElastiCache Redis: current connections",
            lines=(
                MetricLine(
                    metric=_aws(
                        "AWS/ElastiCache", "CurrConnections", "CacheClusterId", REDIS_CLUSTER
                    ),
                    stat="Average",
                    label="connections",
                ),
            ),
            period=300,
            y_label="connections",
        ),
        MetricWidget(
            title="MSK: bytes in per second",
            lines=(
                MetricLine(
                    metric=_aws("AWS/Kafka", "BytesInPerSec", "Cluster Name", MSK_CLUSTER),
                    stat="Average",
                    label="bytes in/s",
                ),
            ),
            period=300,
            y_label="bytes per second",
        ),
        MetricWidget(
            title="Observations accepted (DataIngestionRate)",
            lines=(MetricLine(metric=INGESTION_RATE, stat="Sum", label="observations"),),
            period=300,
            y_label="observations per 5 minutes",
        ),
        MetricWidget(
            title="Reconciliation success rate",
            lines=(MetricLine(metric=RECONCILIATION, stat="Average", label="success"),),
            period=300,
            y_label="percent of reconciliations",
            thresholds=(_threshold(alarms.LOW_RECONCILIATION_SUCCESS, " %"),),
            y_min=None,
        ),
        MetricWidget(
            title="Quality score, average of official values",
            lines=(MetricLine(metric=QUALITY, stat="Average", label="average score"),),
            period=300,
            y_label="quality score (0 to 1)",
            thresholds=(_threshold(alarms.LOW_DATA_QUALITY, ""),),
            y_min=None,
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, GOLDEN_SIGNALS)
