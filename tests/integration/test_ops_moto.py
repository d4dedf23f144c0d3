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
from ops.naming import environment_values

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"  # moto's default account
PARAMETERS = {
    "LoadBalancerFullName": "app/qis-staging/0123456789abcdef",
    "TargetGroupFullName": "targetgroup/k8s-qis-qisapi-0123456789/0123456789abcdef",
    "EventStoreClusterId": "qis-staging",
    "RedisClusterId": "qis-staging-001",
    "MskClusterName": "qis-staging",
}
PARAMETER_ARGS = [
    a for name, value in PARAMETERS.items() for a in ("--parameter", f"{name}={value}")
]
STAGING = ("--environment", "staging", *PARAMETER_ARGS)


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
    topic = f"arn:aws:sns:{region}:{ACCOUNT}:qis-staging-alarms"
    assert qis(moto_url, region, "alarms", "deploy", *STAGING, "--alarm-topic-arn", topic) == 0
    assert f"{len(ALARMS)} to create, 0 to update, 0 unchanged" in capsys.readouterr().out

    described = cloudwatch(moto_url, region).describe_alarms(AlarmNamePrefix="qis-staging-")
    alarms = {a["AlarmName"]: a for a in described["MetricAlarms"]}
    assert set(alarms) == {a.alarm_name.replace("${Environment}", "staging") for a in ALARMS}
    latency = alarms["qis-staging-HighIngestionLatency"]
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
        {"Name": "Environment", "Value": "staging"},
        {"Name": "Service", "Value": "api"},
        {"Name": "Route", "Value": "POST /v1/observations"},
    ]
    assert latency["AlarmDescription"].endswith("Runbook: docs/runbooks/HighIngestionLatency.md")
    assert latency["AlarmActions"] == latency["OKActions"] == [topic]
    ratio = alarms["qis-staging-Ingestion5xxRatio"]
    expression = next(m for m in ratio["Metrics"] if m["ReturnData"])
    assert expression["Expression"].startswith("100 * FILL(m5xx, 0)")
    stats = {m["Id"]: m["MetricStat"] for m in ratio["Metrics"] if "MetricStat" in m}
    assert stats["m5xx"]["Metric"]["Dimensions"][-1] == {"Name": "StatusClass", "Value": "5xx"}
    assert stats["m5xx"]["Stat"] == "Sum"
    assert alarms["qis-staging-NoIngestion"]["TreatMissingData"] == "breaching"
    aurora = alarms["qis-staging-AuroraReplicaLag"]
    assert (aurora["Namespace"], aurora["MetricName"]) == ("AWS/RDS", "AuroraReplicaLag")
    assert aurora["Dimensions"][0] == {"Name": "DBClusterIdentifier", "Value": "qis-staging"}
    (disk,) = alarms["qis-staging-KafkaDiskUsedHigh"]["Metrics"]
    assert disk["Expression"].endswith(""""Cluster Name" = 'qis-staging'""")
    assert disk["Period"] == 300

    # A dry run right after deploying finds nothing to change.
    again = ("alarms", "deploy", "--dry-run", *STAGING, "--alarm-topic-arn", topic)
    assert qis(moto_url, region, *again) == 0
    out = capsys.readouterr().out
    assert out.endswith(
        f"0 to create, 0 to update, {len(ALARMS)} unchanged (dry run: nothing deployed)\n"
    )
    assert "+++" not in out


def test_staging_and_prod_alarms_share_an_account(
    moto_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    region = "sa-east-1"
    assert qis(moto_url, region, "alarms", "deploy", *STAGING) == 0
    prod = [a.replace("staging", "prod") for a in STAGING]
    assert qis(moto_url, region, "alarms", "deploy", *prod) == 0
    out = capsys.readouterr().out
    # prod's deploy neither touches nor reports staging's alarms.
    assert out.endswith(f"{len(ALARMS)} to create, 0 to update, 0 unchanged\n")
    assert "qis-staging" not in out.split("alarm qis-prod-HighIngestionLatency")[1]
    client = cloudwatch(moto_url, region)
    names = [a["AlarmName"] for a in client.describe_alarms()["MetricAlarms"]]
    assert len(names) == 2 * len(ALARMS)
    (staging,) = client.describe_alarms(AlarmNames=["qis-staging-NoIngestion"])["MetricAlarms"]
    (production,) = client.describe_alarms(AlarmNames=["qis-prod-NoIngestion"])["MetricAlarms"]
    assert staging["Dimensions"][0] == {"Name": "Environment", "Value": "staging"}
    assert production["Dimensions"][0] == {"Name": "Environment", "Value": "prod"}


def test_a_changed_threshold_shows_in_the_dry_run_diff(moto_url: str) -> None:
    region = "eu-west-2"
    client = cloudwatch(moto_url, region)
    assert qis(moto_url, region, "alarms", "deploy", *STAGING) == 0
    raised = [
        msgspec.structs.replace(a, threshold=250.0) if a is HIGH_INGESTION_LATENCY else a
        for a in ALARMS
    ]
    values = {**environment_values("staging"), **PARAMETERS}
    desired = deploy.desired_alarms(raised, values)
    changes = deploy.plan_alarms(client, desired, prefix="qis-staging-")
    (changed,) = [c for c in changes if c.action != "unchanged"]
    assert (changed.name, changed.action) == ("qis-staging-HighIngestionLatency", "update")
    assert '-  "Threshold": 200.0,' in changed.diff
    assert '+  "Threshold": 250.0,' in changed.diff
    assert len([line for line in changed.diff.splitlines() if line[:1] in "+-"]) == 4
    # Planning is read-only: what is deployed still says 200.
    deployed = client.describe_alarms(AlarmNames=["qis-staging-HighIngestionLatency"])
    assert deployed["MetricAlarms"][0]["Threshold"] == 200.0


def test_alarms_we_do_not_define_are_reported_not_deleted(
    moto_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    region = "eu-north-1"
    client = cloudwatch(moto_url, region)
    client.put_metric_alarm(
        AlarmName="qis-staging-Legacy",
        Namespace="Custom/QIS",
        MetricName="Old",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    assert qis(moto_url, region, "alarms", "deploy", *STAGING) == 0
    out = capsys.readouterr().out
    assert "alarm qis-staging-Legacy: deployed but not defined here (left alone)" in out
    assert client.describe_alarms(AlarmNames=["qis-staging-Legacy"])["MetricAlarms"]


def test_dashboards_deploy_and_read_back(moto_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    region = "us-west-2"
    assert qis(moto_url, region, "dashboards", "deploy", *STAGING) == 0
    assert "2 to create" in capsys.readouterr().out

    client = cloudwatch(moto_url, region)
    listed = client.list_dashboards(DashboardNamePrefix="qis-staging-")["DashboardEntries"]
    assert {d["DashboardName"] for d in listed} == {
        "qis-staging-GoldenSignals",
        "qis-staging-DataManagement-Overview",
    }
    golden = json.loads(
        client.get_dashboard(DashboardName="qis-staging-GoldenSignals")["DashboardBody"]
    )
    alarm_widget = golden["widgets"][0]["properties"]
    assert alarm_widget["alarms"][0] == (
        f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:qis-staging-HighIngestionLatency"
    )
    latency = next(
        w["properties"]
        for w in golden["widgets"]
        if w["properties"].get("title", "").startswith("Ingestion latency")
    )
    assert latency["region"] == region
    assert [row[-1]["stat"] for row in latency["metrics"]] == ["p50", "p95", "p99", "p95"]
    assert latency["metrics"][0][:4] == ["Custom/QIS", "IngestionLatency", "Environment", "staging"]
    assert latency["annotations"]["horizontal"][0] == {
        "label": "alarm threshold 200 ms",
        "value": 200.0,
        "color": "#d62728",
    }
    overview = json.loads(
        client.get_dashboard(DashboardName="qis-staging-DataManagement-Overview")["DashboardBody"]
    )
    body_text = json.dumps(overview)
    assert "${" not in body_text
    assert PARAMETERS["LoadBalancerFullName"] in body_text

    assert qis(moto_url, region, "dashboards", "deploy", "--dry-run", *STAGING) == 0
    out = capsys.readouterr().out
    assert out.endswith("0 to create, 0 to update, 2 unchanged (dry run: nothing deployed)\n")


def test_dashboards_deploy_needs_every_parameter(
    moto_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    region = "ca-central-1"
    assert qis(moto_url, region, "dashboards", "deploy", "--environment", "staging") == 2
    assert "LoadBalancerFullName" in capsys.readouterr().err
    assert cloudwatch(moto_url, region).list_dashboards()["DashboardEntries"] == []
    with pytest.raises(SystemExit):  # argparse: --environment is required
        qis(moto_url, region, "dashboards", "deploy", *PARAMETER_ARGS)
    with pytest.raises(SystemExit):  # not an environment name
        qis(moto_url, region, "alarms", "deploy", "--environment", "Staging Two")


# The foundation stack's export the monitoring stack imports (foundation.yaml has more).
ALARM_TOPIC_EXPORTER = """
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Environment: {Type: String}
Resources:
  AlarmTopic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Sub 'qis-${Environment}-alarms'
Outputs:
  AlarmTopicArn:
    Value: !Ref AlarmTopic
    Export:
      Name: !Sub 'qis-${Environment}-AlarmTopicArn'
"""


def test_the_cloudformation_template_deploys_the_same_dashboards(moto_url: str) -> None:
    """moto 5.2.5 creates dashboards from a stack but not AWS::CloudWatch::Alarm resources.

    One template, two stacks: staging and prod side by side in one account."""
    region = "ap-southeast-2"
    stacks = boto3.client("cloudformation", region_name=region, endpoint_url=moto_url)
    client = cloudwatch(moto_url, region)
    for environment in ("staging", "prod"):
        stacks.create_stack(
            StackName=f"qis-{environment}-foundation",
            TemplateBody=ALARM_TOPIC_EXPORTER,
            Parameters=[{"ParameterKey": "Environment", "ParameterValue": environment}],
        )
        values = {
            **{k: v.replace("staging", environment) for k, v in PARAMETERS.items()},
            "Environment": environment,
        }
        stacks.create_stack(
            StackName=f"qis-{environment}-monitoring",
            TemplateBody=template_yaml(monitoring_template(DASHBOARDS, ALARMS)),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
        )
        stack = stacks.describe_stacks(StackName=f"qis-{environment}-monitoring")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        expected = deploy.desired_dashboards(
            DASHBOARDS,
            {**values, "RunbookBaseUrl": "", "AWS::Region": region, "AWS::AccountId": ACCOUNT},
        )
        for dashboard in DASHBOARDS:
            name = dashboard.name.replace("${Environment}", environment)
            body = json.loads(client.get_dashboard(DashboardName=name)["DashboardBody"])
            assert body == expected[name]
            assert len(body["widgets"]) == len(dashboard_body(dashboard)["widgets"])
    listed = {d["DashboardName"] for d in client.list_dashboards()["DashboardEntries"]}
    assert len(listed) == 2 * len(DASHBOARDS)
