"""The IRSA roles of infra/cloudformation/identity.yaml against the S3 keys the code uses.

moto does not evaluate IAM, so these read the policies from the template: which actions
each role has on the data lake and the backup bucket, on which key prefixes, and that
the prefixes are the ones `app.domain.lake` and `app.domain.backup` write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.domain import backup, lake
from tests.cfn import load_template

LAKE = "<qis-${Environment}-DataLakeBucketName>"
BACKUPS = "<qis-${Environment}-BackupBucketName>"
REJECTED = "<qis-${Environment}-TimestreamRejectedBucketName>"
S3_ARN = "arn:${AWS::Partition}:s3:::"
VIA_S3 = {"StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}}
HOUR = datetime(2026, 1, 15, 14, tzinfo=UTC)


def _import(node: Any) -> str:
    if "Fn::ImportValue" in node:
        return f"<{node['Fn::ImportValue']['Fn::Sub']}>"
    return "<" + str(node) + ">"  # another function (the Kafka cluster's uuid): as written


def resolve(node: Any) -> str:
    """An ARN of the template as text, each import shown as <export name>."""
    if isinstance(node, str):
        return node
    if "Fn::Sub" not in node:
        return _import(node)
    text, names = node["Fn::Sub"] if isinstance(node["Fn::Sub"], list) else (node["Fn::Sub"], {})
    for name, value in names.items():
        text = text.replace("${" + name + "}", _import(value))
    assert isinstance(text, str)
    return text


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(role: str) -> dict[str, dict[str, Any]]:
    """The statements of a role's one inline policy by Sid, Action and Resource as sorted
    lists of text."""
    [policy] = load_template("identity.yaml")["Resources"][role]["Properties"]["Policies"]
    out = {}
    for statement in policy["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        out[statement["Sid"]] = {
            **statement,
            "Action": sorted(_listed(statement["Action"])),
            "Resource": sorted(resolve(r) for r in _listed(statement["Resource"])),
        }
    return out


def s3_grants(role: str) -> dict[str, list[str]]:
    """Each S3 action of the role with the resources it is granted on."""
    grants: dict[str, list[str]] = {}
    for statement in statements(role).values():
        for action in statement["Action"]:
            if action.startswith("s3:"):
                grants.setdefault(action, []).extend(statement["Resource"])
    return {action: sorted(resources) for action, resources in grants.items()}


def top(key: str) -> str:
    return key.split("/", 1)[0] + "/*"


LAKE_PREFIXES = sorted(
    {
        top(lake.hour_object_key("observations", HOUR, 1)),
        top(lake.audit_key(HOUR, 1)),
        top(lake.manifest_key(HOUR, 1)),
    }
)


def test_the_lake_prefixes_are_the_archives_keys() -> None:
    assert LAKE_PREFIXES == ["audit/*", "manifests/*", "reference-data/*"]


def test_scheduler_writes_the_lake_once_and_lists_only_manifests() -> None:
    policy = statements("SchedulerRole")
    objects = policy["DataLakeArchiveObjects"]
    assert objects["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert objects["Resource"] == [f"{S3_ARN}{LAKE}/{p}" for p in LAKE_PREFIXES]
    listing = policy["DataLakeListManifests"]
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == [f"{S3_ARN}{LAKE}"]
    # HeadBucket (the archive's check) has no prefix: IfExists; a listing has manifests/.
    assert listing["Condition"] == {"StringLikeIfExists": {"s3:prefix": "manifests/*"}}
    key = policy["DataKeyViaS3"]
    assert key["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert key["Resource"] == ["<qis-${Environment}-DataKeyArn>"]
    assert key["Condition"] == VIA_S3
    # Everything it may do in S3: the lake's three prefixes and the rejected records.
    rejected = [f"{S3_ARN}{REJECTED}/rejected-records/*", f"{S3_ARN}{REJECTED}/rejected-writes/*"]
    lake_objects = [f"{S3_ARN}{LAKE}/{p}" for p in LAKE_PREFIXES]
    assert s3_grants("SchedulerRole") == {
        "s3:GetObject": sorted(lake_objects + rejected),
        "s3:PutObject": sorted(lake_objects + rejected),
        "s3:ListBucket": [f"{S3_ARN}{LAKE}"],
    }


def test_api_reads_the_lake_only() -> None:
    policy = statements("ApiRole")
    assert s3_grants("ApiRole") == {
        "s3:GetObject": [f"{S3_ARN}{LAKE}/manifests/*", f"{S3_ARN}{LAKE}/reference-data/*"],
        "s3:ListBucket": [f"{S3_ARN}{LAKE}"],
    }
    assert policy["DataLakeListManifests"]["Condition"] == {
        "StringLike": {"s3:prefix": "manifests/*"}
    }
    key = policy["DataLakeDecrypt"]
    assert key["Action"] == ["kms:Decrypt"]
    assert key["Condition"] == VIA_S3
    assert not any(
        a.startswith("kms:GenerateDataKey") for s in policy.values() for a in s["Action"]
    )


def test_backup_role_writes_only_the_backup_bucket() -> None:
    template = load_template("identity.yaml")
    role = template["Resources"]["BackupRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Fn::Sub"][0]
    assert "system:serviceaccount:${Namespace}:qis-backup" in trust
    assert template["Outputs"]["BackupRoleArn"]["Value"] == {"Fn::GetAtt": ["BackupRole", "Arn"]}
    prefix = top(backup.dump_key("qis", "20261203T145947Z"))
    assert prefix == top(backup.manifest_key("qis", "20261203T145947Z")) == "postgresql/*"
    objects = f"{S3_ARN}{BACKUPS}/{prefix}"
    assert s3_grants("BackupRole") == {
        "s3:AbortMultipartUpload": [objects],
        "s3:GetObject": [objects],
        "s3:PutObject": [objects],
        "s3:ListBucket": [f"{S3_ARN}{BACKUPS}"],
    }
    policy = statements("BackupRole")
    assert policy["BackupList"]["Condition"] == {"StringLike": {"s3:prefix": prefix}}
    assert policy["DataKeyViaS3"]["Condition"] == VIA_S3
    assert policy["DatabaseIamAuth"]["Action"] == ["rds-db:connect"]
    assert (
        policy["DatabaseIamAuth"]["Resource"]
        == statements("ApiRole")["DatabaseIamAuth"]["Resource"]
    )
    assert sorted(policy) == ["BackupList", "BackupObjects", "DataKeyViaS3", "DatabaseIamAuth"]


def test_no_role_deletes_from_s3_and_only_two_write() -> None:
    roles = [
        name
        for name, resource in load_template("identity.yaml")["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role" and "Policies" in resource["Properties"]
    ]
    writers = {}
    for role in roles:
        grants = s3_grants(role)
        assert not [a for a in grants if "Delete" in a or a in ("s3:*", "s3:Put*")], role
        if "s3:PutObject" in grants:
            writers[role] = grants["s3:PutObject"]
    assert sorted(writers) == ["BackupRole", "SchedulerRole"]
    assert all(BACKUPS not in arn for arn in writers["SchedulerRole"])
    assert all(arn.startswith(f"{S3_ARN}{BACKUPS}/") for arn in writers["BackupRole"])
