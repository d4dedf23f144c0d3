"""The definitions agree with the metric contract, the seed, each other and the docs."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from alarms.definitions import ALARMS, HIGH_INGESTION_LATENCY, LOW_DATA_QUALITY, NO_INGESTION
from app.ops.alarm import AlarmDefinitionError, Metric, MetricAlarm, put_metric_alarm_params
from app.ops.catalogue import CATALOGUE, NAMESPACE, metric_spec
from app.ops.dashboard import MetricLine
from dashboards.definitions import DASHBOARDS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "observability.md"


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


def test_alarm_names_are_unique_and_carry_the_prefix() -> None:
    names = [a.alarm_name for a in ALARMS]
    assert len(set(names)) == len(names)
    assert all(name.startswith("QIS-") for name in names)


@pytest.mark.parametrize(
    "metric", [*(m for a in ALARMS for m in alarm_metrics(a)), *dashboard_metrics()]
)
def test_custom_metrics_use_the_contracts_exact_dimension_set(metric: Metric) -> None:
    """CloudWatch matches dimensions exactly: a missing or extra one matches no data."""
    if metric.namespace != NAMESPACE:
        return
    spec = metric_spec(metric.metric_name)
    assert sorted(d.name for d in metric.dimensions) == sorted(spec.dimensions)
    assert metric.dimension_map()["Service"] == spec.service


def test_every_catalogue_metric_is_on_a_dashboard() -> None:
    shown = {m.metric_name for m in dashboard_metrics()}
    assert {spec.name for spec in CATALOGUE} - shown == {"QualityScoreBySeries"}  # via SEARCH


def test_the_seeds_two_alarms_keep_their_intent() -> None:
    latency = put_metric_alarm_params(HIGH_INGESTION_LATENCY)
    assert latency["AlarmName"] == "QIS-HighIngestionLatency"
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
    assert quality["AlarmName"] == "QIS-LowDataQuality"
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


@pytest.mark.parametrize("alarm", ALARMS, ids=lambda a: a.alarm_name)
def test_the_docs_describe_each_alarm(alarm: MetricAlarm) -> None:
    docs = DOCS.read_text(encoding="utf-8")
    row = next((line for line in docs.splitlines() if f"`{alarm.alarm_name}`" in line), "")
    assert row, f"{alarm.alarm_name} missing from docs/observability.md"
    assert f"`{alarm.treat_missing_data}`" in row


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
