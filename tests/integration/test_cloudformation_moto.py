"""Deploy the data-plane CloudFormation templates into a local AWS API (moto server).

What moto 5.2.5's CloudFormation can create is deployed and read back through the
service APIs; the rest is left to cfn-lint and checkov (`make lint`):

- `foundation.yaml` whole: the KMS key (rotation, alias, key policy), the image
  repository (moto keeps its tag mutability, not its scanning), the alarm topic
  (encrypted with that key) and the stack's exports. moto ignores the X-Ray sampling
  rules and the e-mail subscription.
- `data.yaml`, the subset moto creates: the four S3 buckets (their KMS encryption
  resolved through `Fn::ImportValue` of foundation's key). moto fails the whole stack on
  MSK, Aurora, ElastiCache and Timestream (no CloudFormation support, and the outputs
  read their attributes), ignores the bucket policies and the Secrets Manager secret, and
  keeps no versioning, Object Lock, lifecycle or public access block of a bucket. The
  Timestream resources are read from the template instead.
- `events.yaml` whole: the bus, its archive, the two rules and their KMS-encrypted SQS
  queues; then events put by `EventBridgeSink` are read back from the queues. moto takes
  a rule's EventPattern as an object only, so the test substitutes the parameters into
  the template's JSON strings (checking them against `rule_patterns`) and deploys the
  objects.
- `network.yaml`, `cluster.yaml`, `identity.yaml`, `edge.yaml` are not deployed: moto
  cannot evaluate `!Select [0, !GetAZs '']` in network.yaml, and has no EKS, Cognito,
  ACM or WAFv2 CloudFormation support; the outputs of the others read those resources.

Both environments deploy into one region of one account, as staging and prod may share
an account: every name and export carries the environment.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import boto3
import pytest

from app.adapters.eventbridge import EventBridgeSink
from app.adapters.eventbridge_routing import RULES, rule_patterns
from app.settings import EventBridgeSettings
from tests.cfn import load_template
from tests.integration import test_ops_moto
from tests.sink_events import Outbox, official

pytestmark = pytest.mark.integration

ACCOUNT = test_ops_moto.ACCOUNT
# The moto server of test_ops_moto (one per module), and its override of the package's
# autouse fixture that would start PostgreSQL and Kafka.
moto_url = test_ops_moto.moto_url
running_stack = test_ops_moto.running_stack

# data.yaml resources moto's CloudFormation creates (see the module docstring).
MOTO_DATA_TYPES = frozenset({"AWS::S3::Bucket"})


def _refs(node: Any) -> set[str]:
    """Names a template fragment refers to: Ref, GetAtt, and ${Name} inside Fn::Sub."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                for name in text.split("${")[1:]:
                    found.add(name.split("}")[0].split(".")[0])
            found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


def moto_subset(template: dict[str, Any], types: frozenset[str]) -> dict[str, Any]:
    """The resources of `types`, with the parameters they use; no outputs."""
    resources = {k: v for k, v in template["Resources"].items() if v["Type"] in types}
    used = _refs(resources)
    missing = {
        name
        for name in used
        if name not in resources
        and name not in template["Parameters"]
        and not name.startswith("AWS::")
    }
    assert not missing, f"subset refers to resources left out: {sorted(missing)}"
    parameters = {k: v for k, v in template["Parameters"].items() if k in used}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": parameters,
        "Resources": resources,
    }


def deploy(url: str, region: str, stack: str, template: dict[str, Any], **params: str) -> str:
    client = boto3.client("cloudformation", region_name=region, endpoint_url=url)
    client.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    status: str = client.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    return status


def exports(url: str, region: str) -> dict[str, str]:
    client = boto3.client("cloudformation", region_name=region, endpoint_url=url)
    return {e["Name"]: e["Value"] for e in client.list_exports()["Exports"]}


def _policy(raw: Any) -> dict[str, Any]:
    # moto returns a key policy given as a JSON object in the template as that object.
    policy: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
    return policy


def test_foundation_for_staging_and_prod_in_one_account(moto_url: str) -> None:
    region = "eu-west-2"
    foundation = load_template("foundation.yaml")
    for env in ("staging", "prod"):
        status = deploy(moto_url, region, f"qis-{env}-foundation", foundation, Environment=env)
        assert status == "CREATE_COMPLETE"

    kms = boto3.client("kms", region_name=region, endpoint_url=moto_url)
    aliases = {
        a["AliasName"]: a["TargetKeyId"]
        for a in kms.list_aliases()["Aliases"]
        if a["AliasName"].startswith("alias/qis-")
    }
    assert set(aliases) == {"alias/qis-staging-data", "alias/qis-prod-data"}
    assert aliases["alias/qis-staging-data"] != aliases["alias/qis-prod-data"]
    keys = {k["KeyId"]: k["KeyArn"] for k in kms.list_keys()["Keys"]}
    assert set(aliases.values()) <= set(keys)

    exported = exports(moto_url, region)
    sns = boto3.client("sns", region_name=region, endpoint_url=moto_url)
    topics = {t["TopicArn"] for t in sns.list_topics()["Topics"]}
    for env in ("staging", "prod"):
        key_id = aliases[f"alias/qis-{env}-data"]
        assert exported[f"qis-{env}-DataKeyArn"] == keys[key_id]
        assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
        statements = _policy(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
        by_sid = {s["Sid"]: s for s in statements["Statement"]}
        assert set(by_sid) == {
            "AccountAdministers",
            "CloudWatchLogsEncrypts",
            "CloudWatchAlarmsPublish",
            "EventBridgeSendsToQueues",
        }
        assert by_sid["EventBridgeSendsToQueues"]["Principal"] == {
            "Service": "events.amazonaws.com"
        }
        assert by_sid["CloudWatchAlarmsPublish"]["Principal"] == {
            "Service": "cloudwatch.amazonaws.com"
        }

        topic = f"arn:aws:sns:{region}:{ACCOUNT}:qis-{env}-alarms"
        assert topic in topics
        assert exported[f"qis-{env}-AlarmTopicArn"] == topic
        attributes = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
        assert attributes["KmsMasterKeyId"] in (key_id, keys[key_id])

    ecr = boto3.client("ecr", region_name=region, endpoint_url=moto_url)
    repositories = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}
    assert set(repositories) == {"qis-staging", "qis-prod"}
    for repository in repositories.values():
        assert repository["imageTagMutability"] == "IMMUTABLE"


def test_data_lake_buckets_encrypted_with_the_environment_key(moto_url: str) -> None:
    region = "eu-central-1"
    status = deploy(
        moto_url,
        region,
        "qis-staging-foundation",
        load_template("foundation.yaml"),
        Environment="staging",
    )
    assert status == "CREATE_COMPLETE"
    subset = moto_subset(load_template("data.yaml"), MOTO_DATA_TYPES)
    assert set(subset["Resources"]) == {
        "AccessLogBucket",
        "DataLakeBucket",
        "BackupBucket",
        "TimestreamRejectedBucket",
    }
    status = deploy(moto_url, region, "qis-staging-data", subset, Environment="staging")
    assert status == "CREATE_COMPLETE"

    key_arn = exports(moto_url, region)["qis-staging-DataKeyArn"]
    s3 = boto3.client("s3", region_name=region, endpoint_url=moto_url)
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    suffix = f"{ACCOUNT}-{region}"
    expected = {
        f"qis-staging-data-lake-{suffix}": ("aws:kms", key_arn),
        f"qis-staging-backups-{suffix}": ("aws:kms", key_arn),
        f"qis-staging-timestream-rejected-{suffix}": ("aws:kms", key_arn),
        f"qis-staging-access-logs-{suffix}": ("AES256", None),
    }
    assert set(expected) <= names
    for bucket, (algorithm, key) in expected.items():
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        default = rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]
        assert default["SSEAlgorithm"] == algorithm, bucket
        assert default.get("KMSMasterKeyID") == key, bucket
    # S3 bucket names are global: the account and region in each keep environments and
    # regions apart.
    assert all(len(name) <= 63 for name in expected)


def test_timestream_tables_keep_the_architectures_retention_and_the_scheduler_writes() -> None:
    """Not deployable on moto (no Timestream in its CloudFormation): the template is read.
    The retention defaults are the architecture's and `qis timestream setup`'s, and the
    scheduler's role may write exactly the two tables and report rejected records."""
    from app.settings import TimestreamSettings

    data = load_template("data.yaml")
    parameters, resources = data["Parameters"], data["Resources"]
    local = TimestreamSettings()

    def retention(table: str) -> tuple[int, int]:
        props = resources[table]["Properties"]["RetentionProperties"]
        memory = parameters[props["MemoryStoreRetentionPeriodInHours"]["Ref"]]["Default"]
        magnetic = parameters[props["MagneticStoreRetentionPeriodInDays"]["Ref"]]["Default"]
        return memory, magnetic

    assert retention("OfficialValuesTable") == (168, 2555)
    assert retention("QualityMetricsTable") == (24, 365)
    assert retention("OfficialValuesTable") == (
        local.official_values_memory_hours,
        local.official_values_magnetic_days,
    )
    assert retention("QualityMetricsTable") == (
        local.quality_metrics_memory_hours,
        local.quality_metrics_magnetic_days,
    )
    tables = {}
    for name in ("OfficialValuesTable", "QualityMetricsTable"):
        props = resources[name]["Properties"]
        assert props["DatabaseName"] == {"Ref": "TimestreamDatabase"}
        magnetic = props["MagneticStoreWriteProperties"]
        assert magnetic["EnableMagneticStoreWrites"] is True
        location = magnetic["MagneticStoreRejectedDataLocation"]["S3Configuration"]
        assert location["BucketName"] == {"Ref": "TimestreamRejectedBucket"}
        assert location["ObjectKeyPrefix"].startswith("rejected-writes/")
        tables[name] = props["TableName"]
    assert tables == {
        "OfficialValuesTable": local.official_values_table,
        "QualityMetricsTable": local.quality_metrics_table,
    }
    assert resources["TimestreamDatabase"]["Properties"]["DatabaseName"] == {
        "Fn::Sub": "qis-${Environment}-timeseries"
    }

    identity = load_template("identity.yaml")
    role = identity["Resources"]["SchedulerRole"]["Properties"]
    [policy] = role["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    write = statements["TimestreamWrite"]
    assert write["Action"] == "timestream:WriteRecords"
    arns = [entry["Fn::Sub"][0] for entry in write["Resource"]]
    assert sorted(arn.rsplit("/", 1)[1] for arn in arns) == sorted(tables.values())
    assert all(":database/${Database}/table/" in arn for arn in arns)
    assert statements["TimestreamEndpoints"]["Action"] == "timestream:DescribeEndpoints"
    reports = statements["TimestreamRejectedRecords"]
    assert sorted(reports["Action"]) == ["s3:GetObject", "s3:PutObject"]
    prefixes = sorted(entry["Fn::Sub"][0].rsplit("}/", 1)[1] for entry in reports["Resource"])
    assert prefixes == sorted([local.rejected_prefix + "*", "rejected-writes/*"])


def test_events_stack_routes_like_the_local_rules(moto_url: str) -> None:
    """events.yaml whole: the bus, its rules with the patterns of `qis events setup`, the
    encrypted queues they target; then the sink's events routed through it."""
    region = "ap-southeast-2"
    foundation = load_template("foundation.yaml")
    assert deploy(moto_url, region, "qis-prod-foundation", foundation, Environment="prod") == (
        "CREATE_COMPLETE"
    )
    template = load_template("events.yaml")
    # The template's patterns are JSON strings (a numeric filter needs a JSON number, and
    # !Ref of a Number parameter is a string): with the defaults substituted they are the
    # patterns `qis events setup` creates locally.
    patterns = rule_patterns("qis.reference-data", 0.8)
    defaults = {k: str(v["Default"]) for k, v in template["Parameters"].items() if "Default" in v}
    rules_by_id = {"OfficialValuesRule": "official-values", "QualityAlertsRule": "quality-alerts"}
    for logical_id, rule in rules_by_id.items():
        properties = template["Resources"][logical_id]["Properties"]
        text = properties["EventPattern"]["Fn::Sub"]
        for name, value in defaults.items():
            text = text.replace("${" + name + "}", value)
        assert json.loads(text) == patterns[rule]
        # moto's CloudFormation takes an EventPattern object only (it encodes it again).
        properties["EventPattern"] = patterns[rule]
    assert deploy(moto_url, region, "qis-prod-events", template, Environment="prod") == (
        "CREATE_COMPLETE"
    )

    events = boto3.client("events", region_name=region, endpoint_url=moto_url)
    sqs = boto3.client("sqs", region_name=region, endpoint_url=moto_url)
    bus = "qis-prod-events"
    assert (
        events.describe_event_bus(Name=bus)["Arn"]
        == exports(moto_url, region)["qis-prod-EventBusArn"]
    )
    listed = events.list_rules(EventBusName=bus)["Rules"]
    # The archive's own rule (EventBridge makes one per archive) is the archive's.
    rules = {r["Name"]: r for r in listed if not r["Name"].startswith("Events-Archive-")}
    archive = events.describe_archive(ArchiveName=bus)
    assert (archive["EventSourceArn"], archive["RetentionDays"]) == (
        exports(moto_url, region)["qis-prod-EventBusArn"],
        30,
    )
    assert set(rules) == {f"{bus}-{rule}" for rule in RULES}
    key_arn = exports(moto_url, region)["qis-prod-DataKeyArn"]
    queues = {}
    for rule in RULES:
        assert json.loads(rules[f"{bus}-{rule}"]["EventPattern"]) == patterns[rule]
        (target,) = events.list_targets_by_rule(Rule=f"{bus}-{rule}", EventBusName=bus)["Targets"]
        url = sqs.get_queue_url(QueueName=f"qis-prod-{rule}")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert target["Arn"] == attributes["QueueArn"]
        assert attributes["KmsMasterKeyId"] == key_arn
        # Undeliverable events: retried for a day, then to the dead-letter queue.
        dlq = sqs.get_queue_url(QueueName="qis-prod-events-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
        assert target["DeadLetterConfig"] == {"Arn": dlq_arn["Attributes"]["QueueArn"]}
        assert target["RetryPolicy"] == {
            "MaximumEventAgeInSeconds": 86400,
            "MaximumRetryAttempts": 185,
        }
        queues[rule] = url

    bridge = EventBridgeSettings(
        enabled=True,
        bus_name=bus,
        endpoint_url=moto_url,
        region=region,
        access_key_id="testing",
        secret_access_key="testing",
    )
    outbox = Outbox()
    batch = outbox.versions(
        [official("A", 1, 0.99), official("B", 1, 0.5), official("C", 1, 0.7, threshold=0.6)]
    )
    assert asyncio.run(EventBridgeSink.from_settings(bridge).deliver(batch)) == 0
    received = {rule: _drain(sqs, url) for rule, url in queues.items()}
    assert sorted(d["reference_data_id"] for d in received["official-values"]) == ["A", "B", "C"]
    assert sorted((d["type"], d["reference_data_id"]) for d in received["quality-alerts"]) == [
        ("official_value_published", "C"),
        ("quality_alert_raised", "B"),
    ]


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """The details of every message in the queue (bounded polls)."""
    details: list[dict[str, Any]] = []
    for _ in range(20):
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        for message in messages:
            details.append(json.loads(message["Body"])["detail"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return details
