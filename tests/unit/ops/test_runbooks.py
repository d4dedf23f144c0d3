"""Every alarm has a runbook in docs/runbooks/, and its description says where."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alarms.definitions import ALARMS, MANAGED_SERVICE_ALARMS
from ops.alarm import MetricAlarm, put_metric_alarm_params
from ops.cloudformation import MAX_DESCRIPTION, monitoring_template, runbook_url_budget
from ops.naming import DEFAULT_RUNBOOK_BASE_URL, base_name, resolve, runbook_path

ROOT = Path(__file__).resolve().parents[3]
SECTIONS = ("## What it means", "## First checks", "## Likely causes", "## Remediation")


def runbook(alarm: MetricAlarm) -> str:
    return (ROOT / runbook_path(alarm.alarm_name)).read_text(encoding="utf-8")


@pytest.mark.parametrize("alarm", ALARMS, ids=lambda a: base_name(a.alarm_name))
def test_the_description_ends_with_the_runbook_which_exists(alarm: MetricAlarm) -> None:
    name = base_name(alarm.alarm_name)
    assert alarm.alarm_description.endswith(f" Runbook: ${{RunbookBaseUrl}}/{name}.md")
    assert runbook_path(alarm.alarm_name) == f"docs/runbooks/{name}.md"
    assert (ROOT / runbook_path(alarm.alarm_name)).is_file()
    # As deployed with the default base: the repository path, within CloudWatch's limit.
    deployed = resolve(
        alarm, {"Environment": "staging", "RunbookBaseUrl": DEFAULT_RUNBOOK_BASE_URL}
    )
    assert deployed.alarm_description.endswith(f"Runbook: docs/runbooks/{name}.md")
    assert len(deployed.alarm_description) <= MAX_DESCRIPTION


@pytest.mark.parametrize("alarm", ALARMS, ids=lambda a: base_name(a.alarm_name))
def test_each_runbook_says_what_to_check_and_do(alarm: MetricAlarm) -> None:
    text = runbook(alarm)
    assert text.startswith(f"# qis-<env>-{base_name(alarm.alarm_name)}\n")
    positions = [text.find(f"\n{section}\n") for section in (*SECTIONS, "## Escalate")]
    assert -1 not in positions
    assert positions == sorted(positions)
    # The same missing-data treatment as the definition, and at least one exact command.
    assert f"Missing data: `{alarm.treat_missing_data}`" in " ".join(text.split())
    checks = text[positions[1] : positions[2]]
    assert re.search(r"`(kubectl|aws|qis|SELECT) [^`]+`", checks), "no command in First checks"


def test_the_index_lists_every_alarm_once() -> None:
    index = (ROOT / "docs/runbooks/README.md").read_text(encoding="utf-8")
    for alarm in ALARMS:
        name = base_name(alarm.alarm_name)
        row = f"| `qis-<env>-{name}` |"
        assert index.count(row) == 1, name
        assert f"[{name}.md]({name}.md)" in index
    listed = set(re.findall(r"^\| `qis-<env>-(\w+)` \|", index, re.MULTILINE))
    assert listed == {base_name(a.alarm_name) for a in ALARMS}


def procedures() -> set[str]:
    """The runbooks no alarm opens: the README's "Procedures" table."""
    index = (ROOT / "docs/runbooks/README.md").read_text(encoding="utf-8")
    table = index.split("\n## Procedures\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"\[(\w+)\.md\]\(\1\.md\) \|$", table, re.MULTILINE))


def test_no_runbook_without_an_alarm_but_the_procedures() -> None:
    pages = {p.stem for p in (ROOT / "docs/runbooks").glob("*.md")} - {"README"}
    assert procedures() == {"RestoreFromBackup"}
    assert pages - procedures() == {base_name(a.alarm_name) for a in ALARMS}
    assert procedures() <= pages
    assert not procedures() & {base_name(a.alarm_name) for a in ALARMS}


def test_the_runbook_base_url_cannot_push_a_description_past_1024() -> None:
    budget = runbook_url_budget(ALARMS)
    template = monitoring_template((), ALARMS)
    assert template["Parameters"]["RunbookBaseUrl"]["MaxLength"] == budget
    assert template["Parameters"]["RunbookBaseUrl"]["Default"] == DEFAULT_RUNBOOK_BASE_URL
    # A URL as long as allowed keeps every description (environment name up to 20) within.
    url = "https://example.com/" + "x" * (budget - 20)
    assert len(url) == budget
    for alarm in ALARMS:
        deployed = resolve(alarm, {"Environment": "e" * 20, "RunbookBaseUrl": url})
        params = put_metric_alarm_params(deployed)
        assert len(params["AlarmDescription"]) <= MAX_DESCRIPTION, alarm.alarm_name
    assert budget >= 200  # room for a real repository URL


def test_the_managed_service_alarms_have_runbooks_too() -> None:
    assert len(MANAGED_SERVICE_ALARMS) == 8
    for alarm in MANAGED_SERVICE_ALARMS:
        assert alarm.namespaces() <= {
            "AWS/RDS",
            "AWS/ElastiCache",
            "AWS/Kafka",
            "AWS/ApplicationELB",
        }
        assert "docs/runbooks" not in alarm.alarm_description  # the parameter, not a path
        assert runbook(alarm)
