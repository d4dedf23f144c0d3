"""The QIS alarms. Each says, in its description, how it treats missing data and why.

Missing data is the central design question: most Custom/QIS metrics are emitted only when
something happens (DELTA counters and histograms export nothing for an idle interval), so
"no datapoint" usually means "no traffic", not "broken". Only two alarms treat silence as
bad: `QIS-NoIngestion` (silence *is* the failure it looks for) and `QIS-ConsumerLagHigh`
(the lag gauge is reported every interval by a running worker, so its absence means no
worker is consuming). The rest stay quiet when there is nothing to measure, and
`QIS-NoIngestion` catches a whole-service outage instead.

Regenerate `alarms/generated/alarms.json` and the CloudFormation template after editing:
`python -m dashboards.generate`.
"""

from __future__ import annotations

from typing import NamedTuple

from app.telemetry.catalogue import INGESTION_ROUTE, NAMESPACE, OBSERVATIONS_TOPIC
from ops.alarm import Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat

LATENCY_THRESHOLD_MS = 200.0


def _service(name: str) -> tuple[Dimension, ...]:
    return (Dimension(name="Service", value=name),)


INGESTION_DIMENSIONS = (
    Dimension(name="Service", value="api"),
    Dimension(name="Route", value=INGESTION_ROUTE),
)

# The seed's alarm averaged a pre-computed per-minute P95 (`IngestionLatencyP95`,
# Statistic Average). An average of percentiles is not a percentile: a quiet minute of 10
# requests weighs as much as a busy one of 10 000, so slow busy minutes are diluted. Here
# CloudWatch computes p95 over every request of the 5-minute period from the histogram.
HIGH_INGESTION_LATENCY = MetricAlarm(
    alarm_name="QIS-HighIngestionLatency",
    alarm_description=(
        "Ingestion p95 (request received to broker ack, POST /v1/observations) above 200 ms "
        "in 2 consecutive 5-minute periods. Statistic: p95 over all requests of the period "
        "(ExtendedStatistic), not the seed's average of per-minute P95s. "
        "Missing data: notBreaching - no requests means no latency samples; treating that "
        "as breaching would page every quiet night. A silent service is caught by "
        "QIS-NoIngestion. Low sample count (< 200 requests in 5 minutes for p95): ignore - "
        "a handful of slow requests must not flip the alarm."
    ),
    namespace=NAMESPACE,
    metric_name="IngestionLatency",
    dimensions=INGESTION_DIMENSIONS,
    extended_statistic="p95",
    period=300,
    evaluation_periods=2,
    datapoints_to_alarm=2,
    threshold=LATENCY_THRESHOLD_MS,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="notBreaching",
    evaluate_low_sample_count_percentile="ignore",
)

LOW_DATA_QUALITY = MetricAlarm(
    alarm_name="QIS-LowDataQuality",
    alarm_description=(
        "Average quality score of official values below 0.95 in 2 consecutive 10-minute "
        "periods (the seed's alarm and SLO). "
        "Missing data: ignore - scores exist only when official values are computed; when "
        "none are, the last verdict stands: a quality incident stays in ALARM until good "
        "values arrive, instead of resolving itself overnight (the seed's 'breaching' would "
        "page whenever no snap is due). A silent pipeline is caught by QIS-NoIngestion."
    ),
    namespace=NAMESPACE,
    metric_name="QualityScoreAverage",
    dimensions=_service("worker"),
    statistic="Average",
    period=600,
    evaluation_periods=2,
    datapoints_to_alarm=2,
    threshold=0.95,
    comparison_operator="LessThanThreshold",
    treat_missing_data="ignore",
)

NO_INGESTION = MetricAlarm(
    alarm_name="QIS-NoIngestion",
    alarm_description=(
        "No observation accepted for 5 consecutive minutes (DataIngestionRate Sum < 1). "
        "Missing data: breaching - the counter exports nothing when nothing is accepted, so "
        "silence is exactly what this alarm looks for; it is the one alarm that pages on "
        "silence, so the latency and error alarms can safely ignore it. If a feed has a "
        "planned quiet window, mute this alarm for it rather than changing the treatment."
    ),
    namespace=NAMESPACE,
    metric_name="DataIngestionRate",
    dimensions=_service("api"),
    statistic="Sum",
    period=60,
    evaluation_periods=5,
    datapoints_to_alarm=5,
    threshold=1.0,
    comparison_operator="LessThanThreshold",
    treat_missing_data="breaching",
)


def _requests(status_class: str) -> MetricDataQuery:
    return MetricDataQuery(
        id=f"m{status_class}",
        metric_stat=MetricStat(
            metric=Metric(
                namespace=NAMESPACE,
                metric_name="HttpRequests",
                dimensions=(
                    *INGESTION_DIMENSIONS,
                    Dimension(name="StatusClass", value=status_class),
                ),
            ),
            period=300,
            stat="Sum",
        ),
    )


# FILL(..., 0): a status class with no responses in a period exports no datapoint, and in
# metric math a missing operand makes the whole result missing.
FIVE_XX_RATIO_EXPRESSION = "100 * FILL(m5xx, 0) / (FILL(m2xx, 0) + FILL(m4xx, 0) + FILL(m5xx, 0))"

INGESTION_5XX_RATIO = MetricAlarm(
    alarm_name="QIS-Ingestion5xxRatio",
    alarm_description=(
        "More than 1 % of POST /v1/observations responses were 5xx (including 503 load "
        "shedding) in 2 of the last 3 5-minute periods. Metric math over HttpRequests by "
        "StatusClass. Missing data: notBreaching - with no requests the ratio is undefined "
        "(0/0), which is not an error; silence is caught by QIS-NoIngestion."
    ),
    metrics=(
        MetricDataQuery(
            id="ratio",
            expression=FIVE_XX_RATIO_EXPRESSION,
            label="5xx responses (%)",
            return_data=True,
        ),
        _requests("2xx"),
        _requests("4xx"),
        _requests("5xx"),
    ),
    evaluation_periods=3,
    datapoints_to_alarm=2,
    threshold=1.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="notBreaching",
)

CONSUMER_LAG_HIGH = MetricAlarm(
    alarm_name="QIS-ConsumerLagHigh",
    alarm_description=(
        "The observations consumer is more than 10 000 records behind (Maximum over worker "
        "pods) for 5 consecutive minutes. Missing data: breaching - every running worker "
        "reports its lag each export interval, even when it is 0, so no datapoint means no "
        "worker is consuming, which is when lag grows unseen."
    ),
    namespace=NAMESPACE,
    metric_name="ConsumerLag",
    dimensions=(
        Dimension(name="Service", value="worker"),
        Dimension(name="Topic", value=OBSERVATIONS_TOPIC),
    ),
    statistic="Maximum",
    period=60,
    evaluation_periods=5,
    datapoints_to_alarm=5,
    threshold=10_000.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="breaching",
)


class DeadLetterSource(NamedTuple):
    """One (Service, Stage) series of DeadLetterCount: where a record or row is set aside."""

    service: str
    stage: str
    meaning: str

    @property
    def query_id(self) -> str:
        """The alarm's metric query id (`worker_decode`, `scheduler_audit_relay`)."""
        return f"{self.service}_{self.stage.replace('-', '_')}"

    def metric(self) -> Metric:
        """DeadLetterCount with this source's exact dimension set."""
        return Metric(
            namespace=NAMESPACE,
            metric_name="DeadLetterCount",
            dimensions=(
                Dimension(name="Service", value=self.service),
                Dimension(name="Stage", value=self.stage),
            ),
        )


# Every series DeadLetterCount is recorded with. The worker's stages are the dead-letter
# stages of app/domain/dead_letter.py except `replay` (it belongs to `qis dlq replay`, a
# CLI process whose metrics are not exported); tests/unit/ops/test_definitions.py keeps the two
# lists equal. A CloudWatch alarm reads at most 10 metrics.
DEAD_LETTER_SOURCES: tuple[DeadLetterSource, ...] = (
    DeadLetterSource("worker", "decode", "record unreadable or out of bounds"),
    DeadLetterSource("worker", "store", "the database refused its observations"),
    DeadLetterSource("worker", "reconcile", "reconciling a snap it touched failed"),
    DeadLetterSource("worker", "commit", "its batch's commit failed for it alone"),
    DeadLetterSource(
        "scheduler",
        "window",
        "closing a snap's window failed (snap state failed, audit snap.reconciliation_failed)",
    ),
    DeadLetterSource(
        "scheduler", "relay", "the broker refused an outbox event (audit event.set_aside)"
    ),
    DeadLetterSource(
        "scheduler", "audit-relay", "the broker refused an audit record (not on qis.audit.v1)"
    ),
)

# The graph of QIS-GoldenSignals drawing one line per source; the alarm names it.
DEAD_LETTERS_DASHBOARD = "QIS-GoldenSignals"
DEAD_LETTERS_WIDGET = "Dead letters by stage"

# FILL(..., 0) for each: a stage that set nothing aside in a minute exports no datapoint,
# and in metric math one missing operand would make the whole sum missing.
DEAD_LETTERS_EXPRESSION = " + ".join(f"FILL({s.query_id}, 0)" for s in DEAD_LETTER_SOURCES)


def _stages(service: str) -> str:
    return "; ".join(
        f"{s.stage} = {s.meaning}" for s in DEAD_LETTER_SOURCES if s.service == service
    )


DEAD_LETTERS = MetricAlarm(
    alarm_name="QIS-DeadLetters",
    alarm_description=(
        "Something was set aside in the last minute: DeadLetterCount summed over every "
        "Service/Stage series (each FILL 0) > 0. Cause: the line above 0 on "
        f"{DEAD_LETTERS_DASHBOARD}, graph '{DEAD_LETTERS_WIDGET}'. Worker, records in the "
        f"dead-letter topic: {_stages('worker')}. Run `qis dlq list --stage <stage>`, fix "
        "the cause, then `qis dlq replay --stage <stage> --dry-run`, then without --dry-run. "
        f"Scheduler, rows kept in PostgreSQL and logged: {_stages('scheduler')}. "
        "Missing data: notBreaching - a stage exports a datapoint only when it sets "
        "something aside: no datapoint means nothing was."
    ),
    metrics=(
        MetricDataQuery(
            id="dead_letters",
            expression=DEAD_LETTERS_EXPRESSION,
            label="dead letters, all stages",
            return_data=True,
        ),
        *(
            MetricDataQuery(
                id=source.query_id,
                metric_stat=MetricStat(metric=source.metric(), period=60, stat="Sum"),
                label=f"{source.service} {source.stage}",
            )
            for source in DEAD_LETTER_SOURCES
        ),
    ),
    evaluation_periods=1,
    datapoints_to_alarm=1,
    threshold=0.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="notBreaching",
)

LOW_RECONCILIATION_SUCCESS = MetricAlarm(
    alarm_name="QIS-LowReconciliationSuccess",
    alarm_description=(
        "Fewer than 99 % of reconciliations succeeded (Average of 100/0 per reconciled "
        "snap) in 2 consecutive 5-minute periods. Missing data: ignore - reconciliations "
        "happen only when observations arrive; a failing reconciliation stays in ALARM "
        "until successful ones are seen rather than resolving because nothing ran."
    ),
    namespace=NAMESPACE,
    metric_name="ReconciliationSuccessRate",
    dimensions=_service("worker"),
    statistic="Average",
    period=300,
    evaluation_periods=2,
    datapoints_to_alarm=2,
    threshold=99.0,
    comparison_operator="LessThanThreshold",
    treat_missing_data="ignore",
)

STALE_PUBLICATION = MetricAlarm(
    alarm_name="QIS-StalePublication",
    alarm_description=(
        "p95 time from snap to published official value above 120 s (the 60 s collection "
        "window plus a minute of slack) in 2 of the last 3 5-minute periods. Missing data: "
        "notBreaching - publications happen only around snaps. Low sample count: evaluate - "
        "there is one publication per series per snap, far fewer than the 200 samples a "
        "p95 needs, so ignoring low counts would switch the alarm off."
    ),
    namespace=NAMESPACE,
    metric_name="PublicationFreshness",
    dimensions=_service("scheduler"),
    extended_statistic="p95",
    period=300,
    evaluation_periods=3,
    datapoints_to_alarm=2,
    threshold=120.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="notBreaching",
    evaluate_low_sample_count_percentile="evaluate",
)

ALARMS: tuple[MetricAlarm, ...] = (
    HIGH_INGESTION_LATENCY,
    LOW_DATA_QUALITY,
    NO_INGESTION,
    INGESTION_5XX_RATIO,
    CONSUMER_LAG_HIGH,
    DEAD_LETTERS,
    LOW_RECONCILIATION_SUCCESS,
    STALE_PUBLICATION,
)
