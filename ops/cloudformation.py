"""The same dashboards and alarms as a CloudFormation template (`infra/cloudformation/`).

One template for every environment: the `Environment` parameter names the stack's
dashboards and alarms (`qis-<environment>-...`) and filters their metrics, and the alarms
notify the SNS topic that environment's foundation stack exports
(`qis-<environment>-AlarmTopicArn`). Deploy it once per environment
(`infra/cloudformation/deploy.sh ENV monitoring`); the parameter files give each its ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import yaml

from ops.alarm import MetricAlarm, put_metric_alarm_params
from ops.dashboard import Dashboard, dashboard_body, placeholders
from ops.naming import (
    DEFAULT_RUNBOOK_BASE_URL,
    ENVIRONMENT,
    MAX_ENVIRONMENT_LENGTH,
    RUNBOOK_BASE_URL,
    base_name,
)

ENVIRONMENTS = ("staging", "prod")
PARAMETERS: dict[str, str] = {
    "Environment": "Environment name (as foundation.yaml's): prefixes every name, filters "
    "every Custom/QIS metric, selects the exported alarm topic",
    "RunbookBaseUrl": "Where the runbooks are: the alarm descriptions end with "
    "<RunbookBaseUrl>/<alarm>.md (default: the path in the repository)",
    "LoadBalancerFullName": "ALB full name as in its metrics, "
    "e.g. app/qis-staging/0123456789abcdef",
    "TargetGroupFullName": "Target group of the api Ingress as in its metrics, "
    "e.g. targetgroup/k8s-qis-qisapi-0123456789/0123456789abcdef",
    "EventStoreClusterId": "Aurora PostgreSQL cluster identifier of the event store",
    "RedisClusterId": "ElastiCache Redis cache cluster id (the primary node)",
    "MskClusterName": "MSK cluster name",
}
_PSEUDO = {"AWS::Region", "AWS::AccountId"}
# CloudWatch's limit on AlarmDescription.
MAX_DESCRIPTION = 1024
ALARM_TOPIC_EXPORT = "qis-${Environment}-AlarmTopicArn"


def logical_id(name: str, suffix: str) -> str:
    """`qis-${Environment}-HighIngestionLatency` -> `HighIngestionLatencyAlarm`."""
    return re.sub(r"[^A-Za-z0-9]", "", base_name(name)) + suffix


def _sub(value: Any) -> Any:
    """Every string holding a `${Name}` placeholder wrapped in `Fn::Sub` (`Ref` if only that)."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{([A-Za-z][A-Za-z0-9:]*)\}", value)
        if whole:
            return {"Ref": whole.group(1)}
        return {"Fn::Sub": value} if placeholders(value) else value
    if isinstance(value, list | tuple):
        return [_sub(v) for v in value]
    if isinstance(value, dict):
        return {k: _sub(v) for k, v in value.items()}
    return value


def runbook_url_budget(alarms: Sequence[MetricAlarm]) -> int:
    """The longest RunbookBaseUrl that keeps every description within 1024 characters,
    whatever the environment's name (up to MAX_ENVIRONMENT_LENGTH)."""
    longest_environment = "e" * MAX_ENVIRONMENT_LENGTH
    longest = max(
        len(
            a.alarm_description.replace(RUNBOOK_BASE_URL, "").replace(
                ENVIRONMENT, longest_environment
            )
        )
        for a in alarms
    )
    return MAX_DESCRIPTION - longest


def monitoring_template(
    dashboards: Sequence[Dashboard], alarms: Sequence[MetricAlarm]
) -> dict[str, Any]:
    """The template: parameters for environment values, one resource per dashboard and alarm."""
    resources: dict[str, Any] = {}
    used: set[str] = {"Environment"}
    for dashboard in dashboards:
        # Compact: a template body is limited to 51,200 bytes; dashboards/generated/ has the
        # indented JSON for review.
        body = json.dumps(dashboard_body(dashboard), separators=(",", ":"))
        used |= placeholders(body) - _PSEUDO
        resources[logical_id(dashboard.name, "Dashboard")] = {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": _sub(dashboard.name),
                "DashboardBody": {"Fn::Sub": body},
            },
        }
    actions = [{"Fn::ImportValue": {"Fn::Sub": ALARM_TOPIC_EXPORT}}]
    for alarm in alarms:
        params = put_metric_alarm_params(alarm)
        used |= placeholders(json.dumps(params)) - _PSEUDO
        properties = _sub(params)
        properties["AlarmActions"] = actions
        properties["OKActions"] = actions
        resources[logical_id(alarm.alarm_name, "Alarm")] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": properties,
        }
    parameters: dict[str, Any] = {}
    for name in ("Environment", *sorted(used - {"Environment"})):
        parameters[name] = {"Type": "String", "Description": PARAMETERS[name]}
    parameters["Environment"]["AllowedValues"] = list(ENVIRONMENTS)
    if "RunbookBaseUrl" in parameters:
        parameters["RunbookBaseUrl"]["Default"] = DEFAULT_RUNBOOK_BASE_URL
        parameters["RunbookBaseUrl"]["MaxLength"] = runbook_url_budget(alarms)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            "QIS dashboards and alarms of one environment (qis-<Environment>-*), notifying "
            "the foundation stack's exported alarm topic. GENERATED by "
            "`python -m dashboards.generate` from dashboards/definitions.py and "
            "alarms/definitions.py: edit those, not this file."
        ),
        "Parameters": parameters,
        "Resources": resources,
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks; no anchors/aliases (CloudFormation rejects them)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def template_yaml(template: dict[str, Any]) -> str:
    """The template as YAML, keys in definition order.

    Long strings (the dashboard bodies) are folded at 400 columns, not PyYAML's 80: every
    folded line costs its indentation, and `aws cloudformation deploy` without an S3
    bucket takes at most 51,200 bytes of template. The readable copies of the bodies are
    dashboards/generated/*.json."""
    header = "# GENERATED: edit dashboards/definitions.py or alarms/definitions.py instead.\n"
    return header + yaml.dump(template, Dumper=_Dumper, sort_keys=False, width=400)
