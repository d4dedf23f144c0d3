"""Deploy planning without AWS: normalisation, diffs and the printed plan."""

from __future__ import annotations

import pytest

from alarms.definitions import AURORA_REPLICA_LAG, HIGH_INGESTION_LATENCY, INGESTION_5XX_RATIO
from dashboards.definitions import DASHBOARDS
from ops.dashboard import UnresolvedPlaceholders, substitute
from ops.deploy import Change, comparable_alarm, desired_alarms, desired_dashboards, format_plan
from ops.naming import environment_values

STAGING = environment_values("staging")


def test_describe_alarms_output_compares_equal_to_the_definition() -> None:
    desired = desired_alarms([HIGH_INGESTION_LATENCY], STAGING)["qis-staging-HighIngestionLatency"]
    assert {"Name": "Environment", "Value": "staging"} in desired["Dimensions"]
    assert desired["AlarmDescription"].endswith("Runbook: docs/runbooks/HighIngestionLatency.md")
    described = {
        **desired,
        "Threshold": 200,
        "AlarmArn": "arn:aws:cloudwatch:eu-west-1:1:alarm:qis-staging-HighIngestionLatency",
        "StateValue": "OK",
        "OKActions": [],
        "InsufficientDataActions": [],
        "Metrics": [],
        "Dimensions": [dict(d) for d in desired["Dimensions"]],
    }
    assert comparable_alarm(described) == comparable_alarm(desired)


def test_actions_are_set_for_alarm_and_ok() -> None:
    params = desired_alarms([INGESTION_5XX_RATIO], STAGING, ("arn:aws:sns:eu-west-1:1:pager",))
    alarm = params["qis-staging-Ingestion5xxRatio"]
    assert alarm["AlarmActions"] == alarm["OKActions"] == ["arn:aws:sns:eu-west-1:1:pager"]
    assert [m["Id"] for m in alarm["Metrics"]] == ["ratio", "m2xx", "m4xx", "m5xx"]


def test_placeholders_must_all_be_given() -> None:
    assert substitute("${A}-${B::C}", {"A": "1", "B::C": "2"}) == "1-2"
    with pytest.raises(UnresolvedPlaceholders, match="LoadBalancerFullName"):
        desired_dashboards(
            DASHBOARDS, {"AWS::Region": "eu-west-1", "AWS::AccountId": "1", **STAGING}
        )
    # The managed-service alarms need their resources' ids.
    with pytest.raises(UnresolvedPlaceholders, match="EventStoreClusterId"):
        desired_alarms([AURORA_REPLICA_LAG], STAGING)
    aurora = desired_alarms(
        [AURORA_REPLICA_LAG], {**STAGING, "EventStoreClusterId": "qis-staging"}
    )["qis-staging-AuroraReplicaLag"]
    assert aurora["Dimensions"] == [
        {"Name": "DBClusterIdentifier", "Value": "qis-staging"},
        {"Name": "Role", "Value": "READER"},
    ]


def test_the_plan_lists_changes_with_their_diff() -> None:
    changes = [
        Change(
            "alarm",
            "QIS-A",
            "update",
            '--- deployed/QIS-A\n+++ desired/QIS-A\n-  "Threshold": 1.0\n',
        ),
        Change("alarm", "QIS-B", "unchanged"),
        Change("alarm", "QIS-Old", "unmanaged"),
    ]
    text = format_plan(changes, dry_run=True)
    assert "alarm QIS-A: would update\n--- deployed/QIS-A" in text
    assert "alarm QIS-Old: deployed but not defined here (left alone)" in text
    assert text.endswith("0 to create, 1 to update, 1 unchanged (dry run: nothing deployed)\n")
    assert "alarm QIS-A: updated" in format_plan(changes, dry_run=False)
