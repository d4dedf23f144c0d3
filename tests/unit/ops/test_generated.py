"""The committed generated files match the definitions; the CFN template is sound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from alarms.definitions import ALARMS
from dashboards.definitions import DASHBOARDS
from ops.artifacts import TEMPLATE_FILE, generated_files, stale_files, write_files
from ops.cloudformation import logical_id
from ops.dashboard import dashboard_body, substitute
from ops.deploy import desired_alarms

ROOT = Path(__file__).resolve().parents[3]


def test_committed_generated_files_are_up_to_date() -> None:
    stale = stale_files(ROOT, generated_files(ROOT, DASHBOARDS, ALARMS))
    assert not stale, (
        f"stale generated files {[str(p.relative_to(ROOT)) for p in stale]}: "
        "run `python -m dashboards.generate` and commit the result"
    )


def test_a_stale_file_is_detected_and_rewritten(tmp_path: Path) -> None:
    files = generated_files(tmp_path, DASHBOARDS, ALARMS)
    assert set(stale_files(tmp_path, files)) == set(files)
    write_files(tmp_path, files)
    assert stale_files(tmp_path, files) == []
    edited = tmp_path / TEMPLATE_FILE
    edited.write_text(edited.read_text() + "# hand edit\n")
    leftover = tmp_path / "dashboards/generated/Removed.json"
    leftover.write_text("{}")
    assert stale_files(tmp_path, files) == [edited, leftover]
    write_files(tmp_path, files)
    assert stale_files(tmp_path, files) == []
    assert not leftover.exists()


def template() -> dict[str, Any]:
    text = (ROOT / TEMPLATE_FILE).read_text(encoding="utf-8")
    assert "&id" not in text
    assert "*id" not in text
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def substituted(value: Any, values: dict[str, str]) -> Any:
    """What CloudFormation makes of Fn::Sub and Ref given the parameter `values`."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return substitute(value["Fn::Sub"], values)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return values[value["Ref"]]
    if isinstance(value, dict):
        return {k: substituted(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substituted(v, values) for v in value]
    return value


VALUES = {
    "Environment": "staging",
    "RunbookBaseUrl": "https://example.com/qis/docs/runbooks",
    "LoadBalancerFullName": "app/qis-staging/0123",
    "TargetGroupFullName": "targetgroup/k8s-qis-api/0123",
    "EventStoreClusterId": "qis-staging",
    "RedisClusterId": "qis-staging-001",
    "MskClusterName": "qis-staging",
}


def test_the_template_holds_the_same_alarms() -> None:
    resources = template()["Resources"]
    for alarm in ALARMS:
        properties = dict(resources[logical_id(alarm.alarm_name, "Alarm")]["Properties"])
        actions = properties.pop("AlarmActions")
        assert properties.pop("OKActions") == actions
        # The foundation stack's topic of the same environment, on ALARM and on OK.
        assert actions == [{"Fn::ImportValue": {"Fn::Sub": "qis-${Environment}-AlarmTopicArn"}}]
        name = substituted(properties["AlarmName"], VALUES)
        expected = desired_alarms([alarm], VALUES)
        assert list(expected) == [name]
        assert substituted(properties, VALUES) == expected[name]
        assert name.startswith("qis-staging-")


def test_the_template_holds_the_same_dashboards_with_sub_placeholders() -> None:
    parsed = template()
    for dashboard in DASHBOARDS:
        resource = parsed["Resources"][logical_id(dashboard.name, "Dashboard")]
        body = resource["Properties"]["DashboardBody"]["Fn::Sub"]
        assert json.loads(body) == dashboard_body(dashboard)
        name = substituted(resource["Properties"]["DashboardName"], VALUES)
        assert name == dashboard.name.replace("${Environment}", "staging")
    assert set(parsed["Parameters"]) == set(VALUES)
    assert parsed["Parameters"]["Environment"]["AllowedValues"] == ["staging", "prod"]
    assert len((ROOT / TEMPLATE_FILE).read_bytes()) < 51_200  # TemplateBody size limit
