"""Deploy dashboards and alarms for real against a local AWS API (moto in server mode).

The test starts `moto_server` on a free loopback port, deploys through the same commands
an operator runs, then lists and reads back what CloudWatch holds. Each test uses its own
region, so they share one server without sharing state.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import msgspec
import pytest

from alarms.definitions import ALARMS, HIGH_INGESTION_LATENCY
from dashboards.cli import main
from dashboards.definitions import DASHBOARDS
from ops import deploy
from ops.cloudformation import monitoring_template, template_yaml
from ops.dashboard import dashboard_body

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"  # moto's default account
PARAMETERS = {
    "LoadBalancerFullName": "app/qis-alb/0123456789abcdef",
    "EventStoreClusterId": "qis-event-store",
    "RedisClusterId": "qis-redis-001",
    "MskClusterName": "qis-msk",
}
PARAMETER_ARGS = [
    a for name, value in PARAMETERS.items() for a in ("--parameter", f"{name}={value}")
]


@pytest.fixture(scope="session")
def running_stack() -> None:
    """Overrides the package's autouse fixture: these tests need moto, not PostgreSQL/Kafka."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_up(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("moto_server did not accept connections within 30 s")


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server of our own on a free port, with fake credentials in the environment."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    executable = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as output, pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        process = subprocess.Popen(
            [str(executable), "-p", str(port), "-H", "127.0.0.1"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(port, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cloudwatch(url: str, region: str) -> Any:
    return boto3.client("cloudwatch", region_name=region, endpoint_url=url)


def qis(url: str, region: str, *argv: str) -> int:
    return main([*argv, "--endpoint-url", url, "--region", region])


def test_alarms_deploy_and_read_back(moto_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    region = "eu-west-1"
    topic = f"arn:aws:sns:{region}:{ACCOUNT}:qis-critical"
    assert qis(moto_url, region, "alarms", "deploy", "--alarm-topic-arn", topic) == 0
    assert "8 to create, 0 to update, 0 unchanged" in capsys.readouterr().out

    described = cloudwatch(moto_url, region).describe_alarms(AlarmNamePrefix="QIS-")
    alarms = {a["AlarmName"]: a for a in described["MetricAlarms"]}
    assert set(alarms) == {a.alarm_name for a in ALARMS}
    latency = alarms["QIS-HighIngestionLatency"]
    assert latency["MetricName"] == "IngestionLatency"
    assert latency["Namespace"] == "Custom/QIS"
    assert latency["ExtendedStatistic"] == "p95"
    assert "Statistic" not in latency
    assert (latency["Period"], latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (
        300,
        2,
        2,
    )
    assert latency["Threshold"] == 200.0
    assert latency["TreatMissingData"] == "notBreaching"
    assert latency["EvaluateLowSampleCountPercentile"] == "ignore"
    assert latency["Dimensions"] == [
        {"Name": "Service", "Value": "api"},
        {"Name": "Route", "Value": "POST /v1/observations"},
    ]
    assert latency["AlarmActions"] == latency["OKActions"] == [topic]
    ratio = alarms["QIS-Ingestion5xxRatio"]
    expression = next(m for m in ratio["Metrics"] if m["ReturnData"])
    assert expression["Expression"].startswith("100 * FILL(m5xx, 0)")
    stats = {m["Id"]: m["MetricStat"] for m in ratio["Metrics"] if "MetricStat" in m}
    assert stats["m5xx"]["Metric"]["Dimensions"][-1] == {"Name": "StatusClass", "Value": "5xx"}
    assert stats["m5xx"]["Stat"] == "Sum"
    assert alarms["QIS-NoIngestion"]["TreatMissingData"] == "breaching"

    # A dry run right after deploying finds nothing to change.
    assert qis(moto_url, region, "alarms", "deploy", "--dry-run", "--alarm-topic-arn", topic) == 0
    out = capsys.readouterr().out
    assert out.endswith("0 to create, 0 to update, 8 unchanged (dry run: nothing deployed)\n")
    assert "+++" not in out


def test_a_changed_threshold_shows_in_the_dry_run_diff(moto_url: str) -> None:
    region = "eu-west-2"
    client = cloudwatch(moto_url, region)
    assert qis(moto_url, region, "alarms", "deploy") == 0
    raised = [
        msgspec.structs.replace(a, threshold=250.0) if a is HIGH_INGESTION_LATENCY else a
        for a in ALARMS
    ]
    changes = deploy.plan_alarms(client, deploy.desired_alarms(raised))
    (changed,) = [c for c in changes if c.action != "unchanged"]
    assert (changed.name, changed.action) == ("QIS-HighIngestionLatency", "update")
    assert '-  "Threshold": 200.0,' in changed.diff
    assert '+  "Threshold": 250.0,' in changed.diff
    assert len([line for line in changed.diff.splitlines() if line[:1] in "+-"]) == 4
    # Planning is read-only: what is deployed still says 200.
    deployed = client.describe_alarms(AlarmNames=["QIS-HighIngestionLatency"])
    assert deployed["MetricAlarms"][0]["Threshold"] == 200.0


def test_alarms_we_do_not_define_are_reported_not_deleted(
    moto_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    region = "eu-north-1"
    client = cloudwatch(moto_url, region)
    client.put_metric_alarm(
        AlarmName="QIS-Legacy",
        Namespace="Custom/QIS",
        MetricName="Old",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    assert qis(moto_url, region, "alarms", "deploy") == 0
    assert "alarm QIS-Legacy: deployed but not defined here (left alone)" in capsys.readouterr().out
    assert client.describe_alarms(AlarmNames=["QIS-Legacy"])["MetricAlarms"]


def test_dashboards_deploy_and_read_back(moto_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    region = "us-west-2"
    assert qis(moto_url, region, "dashboards", "deploy", *PARAMETER_ARGS) == 0
    assert "2 to create" in capsys.readouterr().out

    client = cloudwatch(moto_url, region)
    listed = client.list_dashboards(DashboardNamePrefix="QIS-")["DashboardEntries"]
    assert {d["DashboardName"] for d in listed} == {d.name for d in DASHBOARDS}
    golden = json.loads(client.get_dashboard(DashboardName="QIS-GoldenSignals")["DashboardBody"])
    alarm_widget = golden["widgets"][0]["properties"]
    assert alarm_widget["alarms"][0] == (
        f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:QIS-HighIngestionLatency"
    )
    latency = next(
        w["properties"]
        for w in golden["widgets"]
        if w["properties"].get("title", "").startswith("Ingestion latency")
    )
    assert latency["region"] == region
    assert [row[-1]["stat"] for row in latency["metrics"]] == ["p50", "p95", "p99", "p95"]
    assert latency["annotations"]["horizontal"][0] == {
        "label": "alarm threshold 200 ms",
        "value": 200.0,
        "color": "#d62728",
    }
    overview = json.loads(
        client.get_dashboard(DashboardName="QIS-DataManagement-Overview")["DashboardBody"]
    )
    body_text = json.dumps(overview)
    assert "${" not in body_text
    assert PARAMETERS["LoadBalancerFullName"] in body_text

    assert qis(moto_url, region, "dashboards", "deploy", "--dry-run", *PARAMETER_ARGS) == 0
    out = capsys.readouterr().out
    assert out.endswith("0 to create, 0 to update, 2 unchanged (dry run: nothing deployed)\n")


def test_dashboards_deploy_needs_every_parameter(
    moto_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    region = "ca-central-1"
    assert qis(moto_url, region, "dashboards", "deploy") == 2
    assert "LoadBalancerFullName" in capsys.readouterr().err
    assert cloudwatch(moto_url, region).list_dashboards()["DashboardEntries"] == []


def test_the_cloudformation_template_deploys_the_same_dashboards(moto_url: str) -> None:
    """moto 5.2.5 creates dashboards from a stack but not AWS::CloudWatch::Alarm resources."""
    region = "ap-southeast-2"
    stacks = boto3.client("cloudformation", region_name=region, endpoint_url=moto_url)
    stacks.create_stack(
        StackName="qis-monitoring",
        TemplateBody=template_yaml(monitoring_template(DASHBOARDS, ALARMS)),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
    )
    status = stacks.describe_stacks(StackName="qis-monitoring")["Stacks"][0]["StackStatus"]
    assert status == "CREATE_COMPLETE"
    client = cloudwatch(moto_url, region)
    values = {**PARAMETERS, "AWS::Region": region, "AWS::AccountId": ACCOUNT}
    expected = deploy.desired_dashboards(DASHBOARDS, values)
    for dashboard in DASHBOARDS:
        body = json.loads(client.get_dashboard(DashboardName=dashboard.name)["DashboardBody"])
        assert body == expected[dashboard.name]
        assert len(body["widgets"]) == len(dashboard_body(dashboard)["widgets"])
