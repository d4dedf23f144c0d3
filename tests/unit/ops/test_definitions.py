"""The definitions agree with the metric contract, the seed, each other and the docs."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from alarms.definitions import (
    ALARMS,
    DEAD_LETTER_SOURCES,
    DEAD_LETTERS,
    DEAD_LETTERS_DASHBOARD,
    DEAD_LETTERS_EXPRESSION,
    DEAD_LETTERS_WIDGET,
    HIGH_INGESTION_LATENCY,
    LOW_DATA_QUALITY,
    NO_INGESTION,
)
from app.domain.dead_letter import DEAD_LETTER_STAGES
from app.telemetry.catalogue import CATALOGUE, NAMESPACE, SERVICES, metric_spec
from dashboards.definitions import DASHBOARDS
from ops import metric_math
from ops.alarm import AlarmDefinitionError, Metric, MetricAlarm, put_metric_alarm_params
from ops.dashboard import ExpressionLine, MetricLine
from ops.naming import resolve, runbook_path

ROOT = Path(__file__).resolve().parents[3]


def alarm_metrics(alarm: MetricAlarm) -> list[Metric]:
    if alarm.metrics:
        return [q.metric_stat.metric for q in alarm.metrics if q.metric_stat is not None]
    return [alarm.metric()]


def dashboard_metrics() -> list[Metric]:
    return [
        line.metric
        for dashboard in DASHBOARDS
        for widget in dashboard.metric_widgets()
        for line in widget.lines
        if isinstance(line, MetricLine)
    ]


def test_names_are_unique_and_carry_the_environment_prefix() -> None:
    names = [a.alarm_name for a in ALARMS]
    assert len(set(names)) == len(names)
    assert all(name.startswith("qis-${Environment}-") for name in names)
    assert [d.name for d in DASHBOARDS] == [
        "qis-${Environment}-DataManagement-Overview",
        "qis-${Environment}-GoldenSignals",
    ]
    assert resolve(HIGH_INGESTION_LATENCY, {"Environment": "prod"}).alarm_name == (
        "qis-prod-HighIngestionLatency"
    )


@pytest.mark.parametrize(
    "metric", [*(m for a in ALARMS for m in alarm_metrics(a)), *dashboard_metrics()]
)
def test_custom_metrics_use_the_contracts_exact_dimension_set(metric: Metric) -> None:
    """CloudWatch matches dimensions exactly: a missing or extra one matches no data."""
    if metric.namespace != NAMESPACE:
        return
    spec = metric_spec(metric.metric_name)
    assert sorted(d.name for d in metric.dimensions) == sorted(spec.dimensions)
    assert metric.dimension_map()["Service"] in spec.services
    # Filtered by the deployed environment: staging's graphs never show prod's series.
    assert metric.dimension_map()["Environment"] == "${Environment}"


def test_the_quality_search_is_filtered_by_environment() -> None:
    searches = [
        line.expression
        for dashboard in DASHBOARDS
        for widget in dashboard.metric_widgets()
        for line in widget.lines
        if isinstance(line, ExpressionLine) and line.expression.startswith("SEARCH(")
    ]
    assert searches == [
        'SEARCH(\'{Custom/QIS,Environment,Service,Series} MetricName="QualityScoreBySeries" '
        "Environment=\"${Environment}\"', 'Average', 600)"
    ]


def test_every_catalogue_metric_is_on_a_dashboard() -> None:
    shown = {m.metric_name for m in dashboard_metrics()}
    assert {spec.name for spec in CATALOGUE} - shown == {"QualityScoreBySeries"}  # via SEARCH


def test_the_seeds_two_alarms_keep_their_intent() -> None:
    latency = put_metric_alarm_params(HIGH_INGESTION_LATENCY)
    assert latency["AlarmName"] == "qis-${Environment}-HighIngestionLatency"
    assert latency["MetricName"] == "IngestionLatency"
    assert latency["ExtendedStatistic"] == "p95"
    assert "Statistic" not in latency
    assert (latency["Period"], latency["EvaluationPeriods"], latency["Threshold"]) == (
        300,
        2,
        200.0,
    )
    assert latency["ComparisonOperator"] == "GreaterThanThreshold"
    assert latency["TreatMissingData"] == "notBreaching"
    quality = put_metric_alarm_params(LOW_DATA_QUALITY)
    assert quality["AlarmName"] == "qis-${Environment}-LowDataQuality"
    assert (quality["Statistic"], quality["Period"], quality["EvaluationPeriods"]) == (
        "Average",
        600,
        2,
    )
    assert (quality["Threshold"], quality["ComparisonOperator"]) == (0.95, "LessThanThreshold")
    # Silence is caught by a separate alarm that does treat missing data as breaching.
    assert NO_INGESTION.treat_missing_data == "breaching"


@pytest.mark.parametrize("alarm", ALARMS, ids=lambda a: a.alarm_name)
def test_each_alarm_explains_its_missing_data_choice(alarm: MetricAlarm) -> None:
    assert f"Missing data: {alarm.treat_missing_data} - " in alarm.alarm_description
    assert len(alarm.alarm_description) <= 1024  # CloudWatch's limit


def test_graph_thresholds_are_the_alarm_thresholds() -> None:
    by_name = {a.alarm_name: a for a in ALARMS}
    linked = [
        t
        for d in DASHBOARDS
        for w in d.metric_widgets()
        for t in w.thresholds
        if t.alarm is not None
    ]
    assert linked
    for threshold in linked:
        assert threshold.value == by_name[threshold.alarm or ""].threshold


def test_invalid_alarms_are_rejected_at_definition_time() -> None:
    base = msgspec.to_builtins(HIGH_INGESTION_LATENCY)
    for broken in (
        {**base, "DatapointsToAlarm": 3},
        {**base, "Statistic": "Average"},
        {**base, "ExtendedStatistic": "tm90"},
        {k: v for k, v in base.items() if k != "Period"},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(broken, MetricAlarm)
    with pytest.raises(AlarmDefinitionError):
        MetricAlarm(
            alarm_name="x",
            alarm_description="x",
            comparison_operator="GreaterThanThreshold",
            threshold=1,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data="missing",
            namespace="N",
            metric_name="M",
            period=60,
            statistic="Sum",
            evaluate_low_sample_count_percentile="ignore",
        )


def test_the_dead_letter_sources_are_every_stage_that_counts() -> None:
    spec = metric_spec("DeadLetterCount")
    assert spec.dimensions == ("Environment", "Service", "Stage")
    assert {s.service for s in DEAD_LETTER_SOURCES} == set(spec.services)
    assert {s.service for s in DEAD_LETTER_SOURCES} <= set(SERVICES)
    # The worker counts each dead letter's stage; `replay` is counted by the CLI (not exported).
    worker = [s.stage for s in DEAD_LETTER_SOURCES if s.service == "worker"]
    assert worker == [stage for stage in DEAD_LETTER_STAGES if stage != "replay"]
    scheduler = [s.stage for s in DEAD_LETTER_SOURCES if s.service == "scheduler"]
    assert scheduler == ["window", "relay", "audit-relay"]
    pairs = [(s.service, s.stage) for s in DEAD_LETTER_SOURCES]
    assert len(set(pairs)) == len(pairs)


def test_the_dead_letter_alarm_sums_every_source_each_filled_with_0() -> None:
    params = put_metric_alarm_params(DEAD_LETTERS)
    assert params["AlarmName"] == "qis-${Environment}-DeadLetters"
    assert "MetricName" not in params
    assert "Dimensions" not in params
    queries = params["Metrics"]
    (returned,) = [q for q in queries if q["ReturnData"]]
    stats = [q for q in queries if "MetricStat" in q]
    assert len(stats) == len(DEAD_LETTER_SOURCES) <= 10  # CloudWatch's limit per alarm
    assert all(q["ReturnData"] is False for q in stats)
    for query, source in zip(stats, DEAD_LETTER_SOURCES, strict=True):
        assert query["MetricStat"]["Metric"] == {
            "Namespace": NAMESPACE,
            "MetricName": "DeadLetterCount",
            "Dimensions": (
                {"Name": "Environment", "Value": "${Environment}"},
                {"Name": "Service", "Value": source.service},
                {"Name": "Stage", "Value": source.stage},
            ),
        }
        assert (query["MetricStat"]["Stat"], query["MetricStat"]["Period"]) == ("Sum", 60)
    tree = metric_math.parse(returned["Expression"])
    assert metric_math.references(tree) == {q["Id"] for q in stats}
    # FILL(m, 0) on each: one stage's datapoint alone makes the sum, missing ones count 0.
    for query in stats:
        alone = {q["Id"]: (2.0 if q is query else None) for q in stats}
        assert metric_math.evaluate(tree, alone) == 2.0
    assert metric_math.evaluate(tree, dict.fromkeys(alone, 1.0)) == float(len(stats))
    assert (params["Threshold"], params["ComparisonOperator"]) == (0.0, "GreaterThanThreshold")
    assert (params["EvaluationPeriods"], params["DatapointsToAlarm"]) == (1, 1)
    assert params["TreatMissingData"] == "notBreaching"


def test_the_dead_letter_alarm_points_at_the_cause() -> None:
    description = DEAD_LETTERS.alarm_description
    assert f"{DEAD_LETTERS_DASHBOARD}, graph '{DEAD_LETTERS_WIDGET}'" in description
    for source in DEAD_LETTER_SOURCES:
        assert source.stage in description
    assert "`qis dlq list --stage <stage>`" in description
    assert "`qis dlq replay --stage <stage> --dry-run`" in description
    (dashboard,) = [d for d in DASHBOARDS if d.name == DEAD_LETTERS_DASHBOARD]
    (widget,) = [w for w in dashboard.metric_widgets() if w.title == DEAD_LETTERS_WIDGET]
    lines = [line for line in widget.lines if isinstance(line, MetricLine)]
    assert len(lines) == len(widget.lines)
    assert [(line.metric, line.stat, line.label) for line in lines] == [
        (source.metric(), "Sum", source.stage) for source in DEAD_LETTER_SOURCES
    ]
    alarmed = {q.metric_stat.metric for q in DEAD_LETTERS.metrics if q.metric_stat is not None}
    assert {line.metric for line in lines} == alarmed
    assert widget.period == DEAD_LETTERS.evaluation_period()
    assert [t.alarm for t in widget.thresholds] == [DEAD_LETTERS.alarm_name]


def test_the_runbook_gives_the_dead_letter_math_and_every_stage() -> None:
    text = (ROOT / runbook_path(DEAD_LETTERS.alarm_name)).read_text(encoding="utf-8")
    assert f"`{DEAD_LETTERS_EXPRESSION}`" in text
    lines = text.splitlines()
    for source in DEAD_LETTER_SOURCES:
        row = f"| {source.service} | `{source.stage}` | {source.meaning} |"
        assert any(line.startswith(row) for line in lines), row


def test_every_catalogue_metric_names_services_that_exist() -> None:
    for spec in CATALOGUE:
        assert spec.services, spec.name
        assert set(spec.services) <= set(SERVICES), spec.name
    assert metric_spec("DeadLetterCount").services == ("worker", "scheduler")
