"""The QIS alarms. Each says, in its description, how it treats missing data and why.

Missing data is the central design question: most Custom/QIS metrics are emitted only when
something happens (DELTA counters and histograms export nothing for an idle interval), so
"no datapoint" usually means "no traffic", not "broken". Only two alarms treat silence as
bad: `NoIngestion` (silence *is* the failure it looks for) and `ConsumerLagHigh` (the lag
gauge is reported every interval by a running worker, so its absence means no worker is
consuming). The rest stay quiet when there is nothing to measure, and `NoIngestion`
catches a whole-service outage instead. The managed-service alarms read AWS metrics that
are reported every minute: a gap there is a monitoring problem (`missing`), not a page.

Every alarm exists once per environment: its name is `qis-${Environment}-<Name>`, its
Custom/QIS metrics are filtered by the `Environment` dimension, and its description ends
with its runbook, `${RunbookBaseUrl}/<Name>.md` (docs/runbooks/<Name>.md in this
repository; ops/naming.py). The managed-service alarms (Aurora, ElastiCache, MSK, ALB)
read the AWS namespaces, with the resources' ids as deploy-time parameters.

Regenerate `alarms/generated/alarms.json` and the CloudFormation template after editing:
`python -m dashboards.generate`.
"""

from __future__ import annotations

from typing import NamedTuple

from app.telemetry.catalogue import INGESTION_ROUTE, NAMESPACE, OBSERVATIONS_TOPIC, SINKS
from ops.alarm import Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat
from ops.naming import ENVIRONMENT, RUNBOOK_BASE_URL, prefixed

LATENCY_THRESHOLD_MS = 200.0

# Deploy-time parameters (CloudFormation parameters, `--parameter` of `qis ... deploy`).
LOAD_BALANCER = "${LoadBalancerFullName}"
TARGET_GROUP = "${TargetGroupFullName}"
EVENT_STORE_CLUSTER = "${EventStoreClusterId}"
REDIS_CLUSTER = "${RedisClusterId}"
MSK_CLUSTER = "${MskClusterName}"

ENVIRONMENT_FILTER = Dimension(name="Environment", value=ENVIRONMENT)


def _service(name: str) -> tuple[Dimension, ...]:
    return (ENVIRONMENT_FILTER, Dimension(name="Service", value=name))


def _runbook(base: str, description: str) -> str:
    """`description` ending with the alarm's runbook (docs/runbooks/<base>.md)."""
    return f"{description} Runbook: {RUNBOOK_BASE_URL}/{base}.md"


INGESTION_DIMENSIONS = (
    ENVIRONMENT_FILTER,
    Dimension(name="Service", value="api"),
    Dimension(name="Route", value=INGESTION_ROUTE),
)

# The reference architecture's alarm averaged a pre-computed per-minute P95 (`IngestionLatencyP95`,
# Statistic Average). An average of percentiles is not a percentile: a quiet minute of 10
# requests weighs as much as a busy one of 10 000, so slow busy minutes are diluted. Here
# CloudWatch computes p95 over every request of the 5-minute period from the histogram.
HIGH_INGESTION_LATENCY = MetricAlarm(
    alarm_name=prefixed("HighIngestionLatency"),
    alarm_description=_runbook(
        "HighIngestionLatency",
        "Ingestion p95 (request received to broker ack, POST /v1/observations) above 200 ms "
        "in 2 consecutive 5-minute periods. Statistic: p95 over all requests of the period "
        "(ExtendedStatistic), not an average of per-minute P95s. "
        "Missing data: notBreaching - no requests means no latency samples; treating that "
        "as breaching would page every quiet night. A silent service is caught by "
        "the NoIngestion alarm. Low sample count (< 200 requests in 5 minutes for p95): ignore - "
        "a handful of slow requests must not flip the alarm.",
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
    alarm_name=prefixed("LowDataQuality"),
    alarm_description=_runbook(
        "LowDataQuality",
        "Average quality score of official values below 0.95 in 2 consecutive 10-minute "
        "periods (the quality SLO). "
        "Missing data: ignore - scores exist only when official values are computed; when "
        "none are, the last verdict stands: a quality incident stays in ALARM until good "
        "values arrive, instead of resolving itself overnight ('breaching' would "
        "page whenever no snap is due). A silent pipeline is caught by the NoIngestion alarm.",
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
    alarm_name=prefixed("NoIngestion"),
    alarm_description=_runbook(
        "NoIngestion",
        "No observation accepted for 5 consecutive minutes (DataIngestionRate Sum < 1). "
        "Missing data: breaching - the counter exports nothing when nothing is accepted, so "
        "silence is exactly what this alarm looks for; it is the one alarm that pages on "
        "silence, so the latency and error alarms can safely ignore it. If a feed has a "
        "planned quiet window, mute this alarm for it rather than changing the treatment.",
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
    alarm_name=prefixed("Ingestion5xxRatio"),
    alarm_description=_runbook(
        "Ingestion5xxRatio",
        "More than 1 % of POST /v1/observations responses were 5xx (including 503 load "
        "shedding) in 2 of the last 3 5-minute periods. Metric math over HttpRequests by "
        "StatusClass. Missing data: notBreaching - with no requests the ratio is undefined "
        "(0/0), which is not an error; silence is caught by the NoIngestion alarm.",
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
    alarm_name=prefixed("ConsumerLagHigh"),
    alarm_description=_runbook(
        "ConsumerLagHigh",
        "The observations consumer is more than 10 000 records behind (Maximum over worker "
        "pods) for 5 consecutive minutes. Missing data: breaching - every running worker "
        "reports its lag each export interval, even when it is 0, so no datapoint means no "
        "worker is consuming, which is when lag grows unseen.",
    ),
    namespace=NAMESPACE,
    metric_name="ConsumerLag",
    dimensions=(
        *_service("worker"),
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
                *_service(self.service),
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

# The graph of the GoldenSignals dashboard drawing one line per source; the alarm names it.
DEAD_LETTERS_DASHBOARD = prefixed("GoldenSignals")
DEAD_LETTERS_WIDGET = "Dead letters by stage"

# FILL(..., 0) for each: a stage that set nothing aside in a minute exports no datapoint,
# and in metric math one missing operand would make the whole sum missing.
DEAD_LETTERS_EXPRESSION = " + ".join(f"FILL({s.query_id}, 0)" for s in DEAD_LETTER_SOURCES)


def _stage_names(service: str) -> str:
    return ", ".join(s.stage for s in DEAD_LETTER_SOURCES if s.service == service)


DEAD_LETTERS = MetricAlarm(
    alarm_name=prefixed("DeadLetters"),
    alarm_description=_runbook(
        "DeadLetters",
        "Something was set aside in the last minute: DeadLetterCount summed over every "
        "Service/Stage series (each FILL 0) > 0. Cause: the line above 0 on "
        f"{DEAD_LETTERS_DASHBOARD}, graph '{DEAD_LETTERS_WIDGET}'. Worker stages "
        f"({_stage_names('worker')}): records in the dead-letter topic; run "
        "`qis dlq list --stage <stage>`, fix the cause, then "
        "`qis dlq replay --stage <stage> --dry-run`, then without --dry-run. Scheduler "
        f"stages ({_stage_names('scheduler')}): rows kept in PostgreSQL and logged. What "
        "each stage means: the runbook. "
        "Missing data: notBreaching - a stage exports a datapoint only when it sets "
        "something aside: no datapoint means nothing was.",
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
    alarm_name=prefixed("LowReconciliationSuccess"),
    alarm_description=_runbook(
        "LowReconciliationSuccess",
        "Fewer than 99 % of reconciliations succeeded (Average of 100/0 per reconciled "
        "snap) in 2 consecutive 5-minute periods. Missing data: ignore - reconciliations "
        "happen only when observations arrive; a failing reconciliation stays in ALARM "
        "until successful ones are seen rather than resolving because nothing ran.",
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
    alarm_name=prefixed("StalePublication"),
    alarm_description=_runbook(
        "StalePublication",
        "p95 time from snap to published official value above 120 s (the 60 s collection "
        "window plus a minute of slack) in 2 of the last 3 5-minute periods. Missing data: "
        "notBreaching - publications happen only around snaps. Low sample count: evaluate - "
        "there is one publication per series per snap, far fewer than the 200 samples a "
        "p95 needs, so ignoring low counts would switch the alarm off.",
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


def _sink_failures(sink: str) -> MetricDataQuery:
    return MetricDataQuery(
        id=f"sink_{sink}",
        metric_stat=MetricStat(
            metric=Metric(
                namespace=NAMESPACE,
                metric_name="SinkFailures",
                dimensions=(*_service("scheduler"), Dimension(name="Sink", value=sink)),
            ),
            period=60,
            stat="Sum",
        ),
        label=f"{sink} failed batches",
    )


SINK_FAILING = MetricAlarm(
    alarm_name=prefixed("SinkFailing"),
    alarm_description=_runbook(
        "SinkFailing",
        "EventBridge or Timestream failed batches in each of the last 5 minutes "
        "(SinkFailures, all Sinks, FILL 0, > 0 in 5 of 5). Nothing is lost: the sink "
        "retries from its position. Missing data: notBreaching - no failure, no datapoint.",
    ),
    metrics=(
        MetricDataQuery(
            id="sink_failures",
            expression=" + ".join(f"FILL(sink_{sink}, 0)" for sink in SINKS),
            label="failed sink batches, all sinks",
            return_data=True,
        ),
        *(_sink_failures(sink) for sink in SINKS),
    ),
    evaluation_periods=5,
    datapoints_to_alarm=5,
    threshold=0.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="notBreaching",
)

# Managed services: what the service depends on, in the AWS namespaces. Each reads the
# resource ids given at deploy time (data.yaml's outputs; the ALB is the Ingress's).


def _aws(namespace: str, name: str, **dimensions: str) -> Metric:
    return Metric(
        namespace=namespace,
        metric_name=name,
        dimensions=tuple(Dimension(name=k, value=v) for k, v in dimensions.items()),
    )


AURORA_REPLICA_LAG = MetricAlarm(
    alarm_name=prefixed("AuroraReplicaLag"),
    alarm_description=_runbook(
        "AuroraReplicaLag",
        "Aurora replica lag (AWS/RDS AuroraReplicaLag, Maximum over the reader instances, "
        "Role=READER) above 1 000 ms for 5 consecutive minutes. The query API reads from "
        "the reader endpoint, so answers are that much behind what the worker wrote. "
        "Missing data: missing - Aurora reports every minute while a reader runs; no "
        "datapoint means no reader (reads then go to the writer), shown as "
        "INSUFFICIENT_DATA rather than a page.",
    ),
    namespace="AWS/RDS",
    metric_name="AuroraReplicaLag",
    dimensions=(
        Dimension(name="DBClusterIdentifier", value=EVENT_STORE_CLUSTER),
        Dimension(name="Role", value="READER"),
    ),
    statistic="Maximum",
    period=60,
    evaluation_periods=5,
    datapoints_to_alarm=5,
    threshold=1000.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="missing",
)

AURORA_CPU_HIGH = MetricAlarm(
    alarm_name=prefixed("AuroraCpuHigh"),
    alarm_description=_runbook(
        "AuroraCpuHigh",
        "Aurora writer CPU (AWS/RDS CPUUtilization, Role=WRITER, Average) above 80 % in 3 "
        "consecutive 5-minute periods: every accepted observation, reconciliation and "
        "official value is written there, so a saturated writer slows the worker and lag "
        "grows. Missing data: missing - the writer reports every minute; a gap is a "
        "monitoring problem, shown as INSUFFICIENT_DATA, not a page.",
    ),
    namespace="AWS/RDS",
    metric_name="CPUUtilization",
    dimensions=(
        Dimension(name="DBClusterIdentifier", value=EVENT_STORE_CLUSTER),
        Dimension(name="Role", value="WRITER"),
    ),
    statistic="Average",
    period=300,
    evaluation_periods=3,
    datapoints_to_alarm=3,
    threshold=80.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="missing",
)

CACHE_EVICTIONS = MetricAlarm(
    alarm_name=prefixed("CacheEvictions"),
    alarm_description=_runbook(
        "CacheEvictions",
        "Redis evicted more than 1 000 keys in each of 3 consecutive 5-minute periods "
        "(AWS/ElastiCache Evictions, Sum, primary node). The parameter group's "
        "allkeys-lru makes some eviction normal; sustained eviction means the query cache's "
        "working set no longer fits, so the L2 hit ratio falls and reads go to PostgreSQL. "
        "Missing data: missing - ElastiCache reports every minute, 0 when nothing is "
        "evicted; a gap is shown as INSUFFICIENT_DATA.",
    ),
    namespace="AWS/ElastiCache",
    metric_name="Evictions",
    dimensions=(Dimension(name="CacheClusterId", value=REDIS_CLUSTER),),
    statistic="Sum",
    period=300,
    evaluation_periods=3,
    datapoints_to_alarm=3,
    threshold=1000.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="missing",
)

CACHE_MEMORY_HIGH = MetricAlarm(
    alarm_name=prefixed("CacheMemoryHigh"),
    alarm_description=_runbook(
        "CacheMemoryHigh",
        "Redis memory use (AWS/ElastiCache DatabaseMemoryUsagePercentage, Average, primary "
        "node) above 90 % of maxmemory in 3 consecutive 5-minute periods: evictions follow "
        "and, near 100 %, replication and backups can fail. Missing data: missing - "
        "ElastiCache reports every minute; a gap is shown as INSUFFICIENT_DATA.",
    ),
    namespace="AWS/ElastiCache",
    metric_name="DatabaseMemoryUsagePercentage",
    dimensions=(Dimension(name="CacheClusterId", value=REDIS_CLUSTER),),
    statistic="Average",
    period=300,
    evaluation_periods=3,
    datapoints_to_alarm=3,
    threshold=90.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="missing",
)

# MSK reports these per broker ("Broker ID", "Cluster Name"); the broker count is a
# parameter of data.yaml (3, 6 or 9), so the alarms take the maximum over every broker of
# the cluster with a Metrics Insights query instead of one metric per broker.
MSK_SCHEMA = 'SCHEMA("AWS/Kafka", "Broker ID", "Cluster Name")'


def _msk_worst_broker(metric_name: str) -> str:
    return f"SELECT MAX({metric_name}) FROM {MSK_SCHEMA} WHERE \"Cluster Name\" = '{MSK_CLUSTER}'"


KAFKA_UNDER_REPLICATED = MetricAlarm(
    alarm_name=prefixed("KafkaUnderReplicatedPartitions"),
    alarm_description=_runbook(
        "KafkaUnderReplicatedPartitions",
        "A broker of the MSK cluster has under-replicated partitions (AWS/Kafka "
        "UnderReplicatedPartitions, maximum over brokers by Metrics Insights) in 10 "
        "consecutive minutes. With min.insync.replicas=2 and acks=all, one more lost "
        "replica makes produces fail (ingestion answers 503). 10 minutes: a broker restart "
        "during MSK patching catches up within that. Missing data: missing - brokers "
        "report every minute; a gap is shown as INSUFFICIENT_DATA.",
    ),
    metrics=(
        MetricDataQuery(
            id="under_replicated",
            expression=_msk_worst_broker("UnderReplicatedPartitions"),
            label="under-replicated partitions, worst broker",
            period=60,
            return_data=True,
        ),
    ),
    evaluation_periods=10,
    datapoints_to_alarm=10,
    threshold=0.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="missing",
)

KAFKA_DISK_USED_HIGH = MetricAlarm(
    alarm_name=prefixed("KafkaDiskUsedHigh"),
    alarm_description=_runbook(
        "KafkaDiskUsedHigh",
        "A broker's data-log volume is more than 80 % full (AWS/Kafka "
        "KafkaDataLogsDiskUsed, maximum over brokers by Metrics Insights) in 3 consecutive "
        "5-minute periods. A full volume stops the broker: its partitions go "
        "under-replicated, then offline. Missing data: missing - brokers report every "
        "minute; a gap is shown as INSUFFICIENT_DATA.",
    ),
    metrics=(
        MetricDataQuery(
            id="disk_used",
            expression=_msk_worst_broker("KafkaDataLogsDiskUsed"),
            label="data-log disk used (%), fullest broker",
            period=300,
            return_data=True,
        ),
    ),
    evaluation_periods=3,
    datapoints_to_alarm=3,
    threshold=80.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="missing",
)


def _alb(query_id: str, metric_name: str) -> MetricDataQuery:
    return MetricDataQuery(
        id=query_id,
        metric_stat=MetricStat(
            metric=_aws("AWS/ApplicationELB", metric_name, LoadBalancer=LOAD_BALANCER),
            period=300,
            stat="Sum",
        ),
    )


# FILL(..., 0): the ALB publishes HTTPCode_* only for periods with such responses.
LOAD_BALANCER_5XX_EXPRESSION = "100 * (FILL(elb5xx, 0) + FILL(target5xx, 0)) / requests"

LOAD_BALANCER_5XX_RATIO = MetricAlarm(
    alarm_name=prefixed("LoadBalancer5xxRatio"),
    alarm_description=_runbook(
        "LoadBalancer5xxRatio",
        "More than 1 % of the ALB's requests got a 5xx in 2 of the last 3 5-minute periods: "
        "the ALB's own (HTTPCode_ELB_5XX_Count: 502/503/504 when no healthy pod answers "
        "or a pod times out) plus the pods' (HTTPCode_Target_5XX_Count), over "
        "RequestCount, every route. Ingestion5xxRatio sees only what reached the api. "
        "Missing data: notBreaching - without requests the ratio is undefined; silence is "
        "caught by the NoIngestion alarm.",
    ),
    metrics=(
        MetricDataQuery(
            id="ratio",
            expression=LOAD_BALANCER_5XX_EXPRESSION,
            label="5xx responses (%)",
            return_data=True,
        ),
        _alb("elb5xx", "HTTPCode_ELB_5XX_Count"),
        _alb("target5xx", "HTTPCode_Target_5XX_Count"),
        _alb("requests", "RequestCount"),
    ),
    evaluation_periods=3,
    datapoints_to_alarm=2,
    threshold=1.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="notBreaching",
)

LOAD_BALANCER_UNHEALTHY_TARGETS = MetricAlarm(
    alarm_name=prefixed("LoadBalancerUnhealthyTargets"),
    alarm_description=_runbook(
        "LoadBalancerUnhealthyTargets",
        "At least one api pod registered with the ALB failed its health check (AWS/"
        "ApplicationELB UnHealthyHostCount, Maximum, target group of the api Ingress) for "
        "5 consecutive minutes; the ALB checks /health/ready, so a pod that cannot reach "
        "PostgreSQL or Kafka counts (Redis down is 'degraded', still 200). A rolling "
        "update's short dips stay below 5 "
        "minutes. Missing data: missing - the ALB reports every minute while the target "
        "group has targets; a gap is shown as INSUFFICIENT_DATA.",
    ),
    namespace="AWS/ApplicationELB",
    metric_name="UnHealthyHostCount",
    dimensions=(
        Dimension(name="TargetGroup", value=TARGET_GROUP),
        Dimension(name="LoadBalancer", value=LOAD_BALANCER),
    ),
    statistic="Maximum",
    period=60,
    evaluation_periods=5,
    datapoints_to_alarm=5,
    threshold=0.0,
    comparison_operator="GreaterThanThreshold",
    treat_missing_data="missing",
)

MANAGED_SERVICE_ALARMS: tuple[MetricAlarm, ...] = (
    AURORA_REPLICA_LAG,
    AURORA_CPU_HIGH,
    CACHE_EVICTIONS,
    CACHE_MEMORY_HIGH,
    KAFKA_UNDER_REPLICATED,
    KAFKA_DISK_USED_HIGH,
    LOAD_BALANCER_5XX_RATIO,
    LOAD_BALANCER_UNHEALTHY_TARGETS,
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
    SINK_FAILING,
    *MANAGED_SERVICE_ALARMS,
)
