"""Deploy dashboards and alarms with boto3, or show what would change (a unified diff).

Clients are built by the caller (`cloudwatch_client`), never at import time. A plan reads
what is deployed, compares it with the definitions as the same normalised JSON, and lists
one change per dashboard/alarm: create, update (with the diff) or unchanged. Dashboards
and alarms named like ours (the environment's `qis-<environment>-` prefix) but not
defined here are reported, never deleted.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import boto3
import msgspec
from botocore.exceptions import ClientError

from ops.alarm import MetricAlarm, put_metric_alarm_params
from ops.dashboard import Dashboard, dashboard_body, substitute

# The PutMetricAlarm parameters; DescribeAlarms returns these plus state and ARNs.
_ALARM_KEYS = (
    "AlarmName",
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
    "ThresholdMetricId",
)

Action = Literal["create", "update", "unchanged", "unmanaged"]


class Change(msgspec.Struct, frozen=True):
    """What deploying one dashboard or alarm does; `diff` is deployed -> desired."""

    kind: Literal["dashboard", "alarm"]
    name: str
    action: Action
    diff: str = ""


def cloudwatch_client(region: str | None, endpoint_url: str | None) -> Any:
    """A CloudWatch client for `region` (None: boto3's default chain) and optional endpoint."""
    return boto3.client("cloudwatch", region_name=region, endpoint_url=endpoint_url)


def account_id(region: str | None, endpoint_url: str | None) -> str:
    """The caller's AWS account id, from STS at the same endpoint."""
    sts = boto3.client("sts", region_name=region, endpoint_url=endpoint_url)
    identity: dict[str, Any] = sts.get_caller_identity()
    return str(identity["Account"])


def desired_dashboards(
    dashboards: Sequence[Dashboard], values: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Dashboard name -> body, name and body with every `${Name}` placeholder filled
    from `values` (`Environment` among them)."""
    bodies: dict[str, dict[str, Any]] = {}
    for dashboard in dashboards:
        text = substitute(json.dumps(dashboard_body(dashboard)), values)
        bodies[substitute(dashboard.name, values)] = json.loads(text)
    return bodies


def desired_alarms(
    alarms: Sequence[MetricAlarm],
    values: Mapping[str, str],
    alarm_actions: tuple[str, ...] = (),
) -> dict[str, dict[str, Any]]:
    """Alarm name -> PutMetricAlarm parameters, every `${Name}` placeholder filled from
    `values` (`Environment`, `RunbookBaseUrl`, the managed services' ids)."""
    desired: dict[str, dict[str, Any]] = {}
    for alarm in alarms:
        text = substitute(json.dumps(put_metric_alarm_params(alarm, alarm_actions)), values)
        params: dict[str, Any] = json.loads(text)
        desired[params["AlarmName"]] = params
    return desired


def comparable_alarm(params: Mapping[str, Any]) -> dict[str, Any]:
    """PutMetricAlarm parameters without empty values, so deployed and desired compare."""
    kept = {k: params[k] for k in _ALARM_KEYS if params.get(k) not in (None, [], ())}
    if "Threshold" in kept:
        kept["Threshold"] = float(kept["Threshold"])
    comparable: dict[str, Any] = json.loads(json.dumps(kept))  # tuples -> lists, as AWS returns
    return comparable


def _pretty(document: Any) -> list[str]:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").splitlines(keepends=True)


def _diff(name: str, deployed: Any, desired: Any) -> str:
    before = [] if deployed is None else _pretty(deployed)
    lines = difflib.unified_diff(before, _pretty(desired), f"deployed/{name}", f"desired/{name}")
    return "".join(lines)


def _change(kind: Literal["dashboard", "alarm"], name: str, deployed: Any, desired: Any) -> Change:
    if deployed == desired:
        return Change(kind, name, "unchanged")
    action: Action = "create" if deployed is None else "update"
    return Change(kind, name, action, _diff(name, deployed, desired))


def _deployed_dashboard(client: Any, name: str) -> Any:
    try:
        body = client.get_dashboard(DashboardName=name)["DashboardBody"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ResourceNotFound", "ResourceNotFoundException"):
            return None
        raise
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return body


def plan_dashboards(
    client: Any, desired: Mapping[str, dict[str, Any]], *, prefix: str
) -> list[Change]:
    """One change per desired dashboard, then `unmanaged` ones carrying `prefix`."""
    changes = [
        _change("dashboard", n, _deployed_dashboard(client, n), b) for n, b in desired.items()
    ]
    paginator = client.get_paginator("list_dashboards")
    for page in paginator.paginate(DashboardNamePrefix=prefix):
        for entry in page.get("DashboardEntries", []):
            if entry["DashboardName"] not in desired:
                changes.append(Change("dashboard", entry["DashboardName"], "unmanaged"))
    return changes


def _deployed_alarms(client: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    paginator = client.get_paginator("describe_alarms")
    for start in range(0, len(names), 100):
        chunk = list(names[start : start + 100])
        for page in paginator.paginate(AlarmNames=chunk, AlarmTypes=["MetricAlarm"]):
            for alarm in page.get("MetricAlarms", []):
                found[alarm["AlarmName"]] = comparable_alarm(alarm)
    return found


def plan_alarms(client: Any, desired: Mapping[str, dict[str, Any]], *, prefix: str) -> list[Change]:
    """One change per desired alarm, then `unmanaged` ones carrying `prefix`."""
    deployed = _deployed_alarms(client, list(desired))
    changes = [
        _change("alarm", name, deployed.get(name), comparable_alarm(params))
        for name, params in desired.items()
    ]
    paginator = client.get_paginator("describe_alarms")
    for page in paginator.paginate(AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"]):
        for alarm in page.get("MetricAlarms", []):
            if alarm["AlarmName"] not in desired:
                changes.append(Change("alarm", alarm["AlarmName"], "unmanaged"))
    return changes


def apply_dashboards(
    client: Any, desired: Mapping[str, dict[str, Any]], changes: Sequence[Change]
) -> list[str]:
    """`put_dashboard` for each created or updated dashboard; returns validation messages."""
    messages = []
    for change in changes:
        if change.action in ("create", "update"):
            response = client.put_dashboard(
                DashboardName=change.name, DashboardBody=json.dumps(desired[change.name])
            )
            messages += [
                f"{change.name}: {m.get('Message', m)}"
                for m in response.get("DashboardValidationMessages", [])
            ]
    return messages


def apply_alarms(
    client: Any, desired: Mapping[str, dict[str, Any]], changes: Sequence[Change]
) -> None:
    """`put_metric_alarm` for each created or updated alarm."""
    for change in changes:
        if change.action in ("create", "update"):
            client.put_metric_alarm(**desired[change.name])


def format_plan(changes: Sequence[Change], dry_run: bool) -> str:
    """Each change with its diff, then a one-line summary."""
    lines = []
    if dry_run:
        verb = {"create": "would create", "update": "would update"}
    else:
        verb = {"create": "created", "update": "updated"}
    for change in changes:
        action = verb.get(change.action, change.action)
        if change.action == "unmanaged":
            action = "deployed but not defined here (left alone)"
        lines.append(f"{change.kind} {change.name}: {action}")
        if change.diff:
            lines.append(change.diff.rstrip("\n"))
    counts = {a: sum(c.action == a for c in changes) for a in ("create", "update", "unchanged")}
    summary = (
        f"{counts['create']} to create, {counts['update']} to update, "
        f"{counts['unchanged']} unchanged"
    )
    lines.append(summary + (" (dry run: nothing deployed)" if dry_run else ""))
    return "\n".join(lines) + "\n"
