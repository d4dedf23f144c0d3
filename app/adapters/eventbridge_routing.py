"""The event bus's two rules and, locally, the bus, rules and SQS queues (docs/events.md).

The rules are the two consumers the architecture names:

- `official-values` (downstream publication): every `Official Value Published` event.
- `quality-alerts`: every `Quality Alert Raised` and `Reconciliation Failed` event, and
  every `Official Value Published` event scored below `low_quality_score` whose series
  did not already flag it (status not `suspect`: a suspect version has its own
  `Quality Alert Raised`), so a low score reaches the quality consumer once, whatever
  threshold its series has.

In AWS the events stack (infra/cloudformation/events.yaml) creates the bus and the rules
with the same patterns (a test compares them). `ensure_local_routing` creates them on the
local moto server with an SQS queue as each rule's target, for `qis events setup`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from app.adapters.eventbridge import DETAIL_TYPES, aws_client
from app.domain.events import OfficialValuePublished, QualityAlertRaised, ReconciliationFailed

if TYPE_CHECKING:
    from app.settings import EventBridgeSettings

__all__ = ["ROUTING_ERRORS", "RULES", "ensure_local_routing", "rule_patterns"]

ROUTING_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

# Rule names, after the bus's name: `<bus>-official-values`, `<bus>-quality-alerts`.
RULES = ("official-values", "quality-alerts")


def rule_patterns(source: str, low_quality_score: float) -> dict[str, dict[str, Any]]:
    """The event pattern of each rule (by its name in `RULES`)."""
    published = DETAIL_TYPES[OfficialValuePublished]
    return {
        "official-values": {"source": [source], "detail-type": [published]},
        "quality-alerts": {
            "source": [source],
            "$or": [
                {
                    "detail-type": [
                        DETAIL_TYPES[QualityAlertRaised],
                        DETAIL_TYPES[ReconciliationFailed],
                    ]
                },
                {
                    "detail-type": [published],
                    "detail": {
                        "status": [{"anything-but": ["suspect"]}],
                        "quality": {"score": [{"numeric": ["<", low_quality_score]}]},
                    },
                },
            ],
        },
    }


def _queue_policy(queue_arn: str, rule_arn: str) -> str:
    """Lets the rule (and only it) send to the queue, as EventBridge needs in AWS."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EventBridgeRule",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
    )


def ensure_local_routing(
    settings: EventBridgeSettings, events: Any = None, sqs: Any = None
) -> tuple[bool, dict[str, str]]:
    """Create (or update to the current patterns) the bus, its two rules and an SQS queue
    per rule as its target. Idempotent. Returns whether the bus was created now, and the
    URL of each rule's queue (by rule name: `<bus>-official-values`, ...).

    Needs an endpoint URL (ValueError without one): in AWS the events stack owns the bus
    and its rules, and the consumers their queues."""
    if not settings.endpoint_url:
        raise ValueError(
            "QIS_EVENTBRIDGE__ENDPOINT_URL is empty: in AWS the bus and its rules are the"
            " events stack's (infra/cloudformation/events.yaml)"
        )
    events = events or aws_client("events", settings)
    sqs = sqs or aws_client("sqs", settings)
    bus = settings.bus_name
    created = False
    try:
        events.describe_event_bus(Name=bus)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        events.create_event_bus(Name=bus)
        created = True
    routed: dict[str, str] = {}
    for rule, pattern in rule_patterns(settings.source, settings.low_quality_score).items():
        name = f"{bus}-{rule}"
        rule_arn = events.put_rule(
            Name=name,
            EventBusName=bus,
            EventPattern=json.dumps(pattern),
            State="ENABLED",
            Description=f"QIS {rule} consumer (docs/events.md)",
        )["RuleArn"]
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": _queue_policy(queue_arn, rule_arn)}
        )
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
        routed[name] = queue_url
    return created, routed
