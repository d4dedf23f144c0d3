"""The Helm chart as rendered for staging and prod: what the cluster would receive.

Renders `infra/helm/qis` with `helm template` (the binary `infra/tools.sh helm` caches;
`make lint` builds it on its first run) and the stand-in account values of
`infra/helm/ci/example-values.yaml`. Schema validity is `make lint`'s job
(kubernetes-validate); these tests check what a schema cannot: the security context of
every pod, the worker's ceiling, the hook, and that every process's environment is a
valid settings tree for `app.settings.load_settings`. Last, the CloudFormation parameter
files of both environments against their templates' parameters.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "infra" / "helm" / "qis"
EXAMPLE = ROOT / "infra" / "helm" / "ci" / "example-values.yaml"
ENVIRONMENTS = ("staging", "prod")


@cache
def helm() -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "infra" / "tools.sh"), "helm"],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done.stdout.strip()


def render(env: str, *sets: str) -> subprocess.CompletedProcess[str]:
    argv = [helm(), "template", "qis", str(CHART), "--namespace", "qis"]
    argv += ["--kube-version", "1.33.0", "-f", str(CHART / f"values-{env}.yaml")]
    argv += ["-f", str(EXAMPLE)]
    for assignment in sets:
        argv += ["--set", assignment]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@cache
def manifests(env: str) -> tuple[dict[str, Any], ...]:
    done = render(env)
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def by_kind(env: str, kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests(env) if m["kind"] == kind}


def pod_specs(env: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for manifest in manifests(env):
        if manifest["kind"] in ("Deployment", "Job"):
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]
        elif manifest["kind"] == "CronJob":
            job = manifest["spec"]["jobTemplate"]["spec"]
            yield manifest["metadata"]["name"], job["template"]["spec"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_pod_runs_non_root_read_only_without_capabilities(env: str) -> None:
    names = []
    for name, spec in pod_specs(env):
        names.append(name)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == 10001, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        mounts_tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        assert mounts_tmp == {"tmp"}, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108
            assert "memory" in container["resources"]["limits"], (name, container["name"])
    assert sorted(names) == [
        "qis-adot-collector",
        "qis-api",
        "qis-backup",
        "qis-migrations",
        "qis-scheduler",
        "qis-worker",
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_service_process_gets_a_valid_settings_tree(env: str) -> None:
    commands = {}
    for name, spec in pod_specs(env):
        for container in spec.get("initContainers", []) + spec["containers"]:
            if "aws-otel-collector" in container["image"]:
                continue
            environ = {e["name"]: e["value"] for e in container["env"]}
            settings = load_settings(environ)  # raises on an unknown or inconsistent QIS_*
            assert settings.telemetry.environment == env
            assert settings.telemetry.traces_exporter == "otlp"
            assert settings.telemetry.otlp_endpoint == (
                "http://qis-adot-collector.qis.svc:4318/v1/traces"
            )
            assert settings.kafka.observations_partitions == 12
            assert settings.kafka.security_protocol == "SASL_SSL"
            assert settings.db.ssl_mode == "verify-full"
            # The lake and backup bucket in AWS: data.yaml's buckets, S3's own endpoint.
            assert settings.lake.enabled is True
            assert settings.lake.endpoint_url == ""
            assert settings.lake.region == "eu-west-1"
            assert settings.lake.bucket == "qis-example-data-lake-111122223333-eu-west-1"
            assert settings.lake.backup_bucket == "qis-example-backups-111122223333-eu-west-1"
            assert settings.lake.access_key_id == ""
            commands[(name, container["name"])] = container["args"]
    assert commands == {
        ("qis-api", "api"): ["api"],
        ("qis-worker", "worker"): ["worker"],
        ("qis-scheduler", "scheduler"): ["scheduler"],
        ("qis-migrations", "db-migrate"): ["db", "migrate"],
        ("qis-migrations", "kafka-topics"): ["kafka", "topics"],
        ("qis-backup", "backup"): ["backup"],
    }


def test_api_probes_ingress_and_scaling() -> None:
    api = by_kind("staging", "Deployment")["qis-api"]["spec"]["template"]["spec"]
    container = api["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    annotations = by_kind("staging", "Ingress")["qis-api"]["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/health/ready"
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"].startswith("arn:aws:acm:")
    assert annotations["alb.ingress.kubernetes.io/wafv2-acl-arn"].startswith("arn:aws:wafv2:")
    hpa = by_kind("prod", "HorizontalPodAutoscaler")["qis-api"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (4, 16)
    assert by_kind("prod", "PodDisruptionBudget")["qis-api"]["spec"]["minAvailable"] == 2


def test_worker_is_capped_at_the_partition_count() -> None:
    scaled = by_kind("prod", "ScaledObject")["qis-worker"]["spec"]
    assert scaled["maxReplicaCount"] == 12
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "qis-worker"
    assert trigger["metadata"]["topic"] == "qis.observations.v1"
    assert trigger["metadata"]["sasl"] == "aws_msk_iam"
    auth = by_kind("prod", "TriggerAuthentication")["qis-worker-msk-iam"]["spec"]
    assert auth == {"podIdentity": {"provider": "aws"}}
    # KEDA owns the replica count in prod; staging has a fixed one and no ScaledObject.
    assert "replicas" not in by_kind("prod", "Deployment")["qis-worker"]["spec"]
    assert by_kind("staging", "Deployment")["qis-worker"]["spec"]["replicas"] == 3
    assert by_kind("staging", "ScaledObject") == {}

    too_many = render("staging", "worker.replicas=13")
    assert too_many.returncode != 0
    assert "worker.replicas=13 exceeds kafka.observationsPartitions=12" in too_many.stderr
    too_high = render("prod", "worker.keda.maxReplicas=24")
    assert too_high.returncode != 0
    assert "worker.keda.maxReplicas=24 exceeds" in too_high.stderr
    more_partitions = render("staging", "worker.replicas=13", "kafka.observationsPartitions=24")
    assert more_partitions.returncode == 0, more_partitions.stderr


def test_scheduler_has_two_replicas() -> None:
    for env in ENVIRONMENTS:
        assert by_kind(env, "Deployment")["qis-scheduler"]["spec"]["replicas"] == 2


def test_migrations_run_as_a_hook_before_install_and_upgrade() -> None:
    job = by_kind("staging", "Job")["qis-migrations"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    account = by_kind("staging", "ServiceAccount")["qis-migrations"]
    # The hook's own service account exists before the Job (lower weight).
    assert account["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        "role/qis-example-migrations"
    )
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "qis-migrations"


def test_service_accounts_are_the_ones_the_irsa_roles_trust() -> None:
    identity = (ROOT / "infra" / "cloudformation" / "identity.yaml").read_text()
    trusted = set(re.findall(r"system:serviceaccount:\$\{Namespace\}:([a-z-]+)", identity))
    rendered = set(by_kind("staging", "ServiceAccount"))
    assert (
        trusted
        == rendered
        == {
            "qis-api",
            "qis-worker",
            "qis-scheduler",
            "qis-operator",
            "qis-migrations",
            "qis-backup",
            "qis-adot-collector",
        }
    )
    for name, account in by_kind("staging", "ServiceAccount").items():
        assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"], name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backup_cronjob_runs_qis_backup_daily_as_its_own_service_account(env: str) -> None:
    cronjob = by_kind(env, "CronJob")["qis-backup"]["spec"]
    assert cronjob["schedule"] == "30 4 * * *"
    assert cronjob["timeZone"] == "Etc/UTC"
    assert cronjob["concurrencyPolicy"] == "Forbid"
    job = cronjob["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == "qis-backup"
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["args"] == ["backup"]
    settings = load_settings({e["name"]: e["value"] for e in container["env"]})
    assert settings.backup.pg_bin == "/usr/lib/postgresql/15/bin"
    assert settings.backup.timeout_seconds == 3600.0
    assert settings.db.auth == "iam"
    # The Job outlives the command's own bound, so the command reports its timeout.
    assert job["activeDeadlineSeconds"] > settings.backup.timeout_seconds
    account = by_kind(env, "ServiceAccount")["qis-backup"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        "role/qis-example-backup"
    )
    # The backup settings are the CronJob's alone.
    api = by_kind(env, "Deployment")["qis-api"]["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in api["env"] if e["name"].startswith("QIS_BACKUP__")]


def test_backup_and_lake_values_are_checked() -> None:
    off = render("staging", "backup.enabled=false")
    assert off.returncode == 0, off.stderr
    kinds = [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(off.stdout) if d]
    assert ("ServiceAccount", "qis-api") in kinds
    assert not [k for k in kinds if k[1] == "qis-backup"]
    schedule = render("prod", "backup.schedule=0 2 * * 0")
    assert schedule.returncode == 0, schedule.stderr
    assert 'schedule: "0 2 * * 0"' in schedule.stdout
    no_bucket = render("prod", "lake.backupBucket=")
    assert no_bucket.returncode != 0
    assert "lake.backupBucket is required when backup.enabled" in no_bucket.stderr
    no_lake = render("staging", "lake.bucket=")
    assert no_lake.returncode != 0
    assert "lake.bucket is required when lake.enabled" in no_lake.stderr
    owned = render("staging", "env.QIS_LAKE__BUCKET=elsewhere")
    assert owned.returncode != 0
    assert "env.QIS_LAKE__BUCKET is set by the chart" in owned.stderr
    disabled = render("staging", "lake.enabled=false", "lake.bucket=", "backup.enabled=false")
    assert disabled.returncode == 0, disabled.stderr
    [api] = [
        d
        for d in yaml.safe_load_all(disabled.stdout)
        if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "qis-api"
    ]
    environ = {
        e["name"]: e["value"] for e in api["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert load_settings(environ).lake.enabled is False
    assert "QIS_LAKE__BUCKET" not in environ


def test_collector_receives_otlp_and_exports_to_xray_and_emf() -> None:
    config = yaml.safe_load(
        by_kind("staging", "ConfigMap")["qis-adot-collector"]["data"]["config.yaml"]
    )
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["receivers"] == ["otlp"]
    assert pipelines["traces"]["exporters"] == ["awsxray"]
    assert pipelines["metrics"]["exporters"] == ["awsemf"]
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    assert config["exporters"]["awsemf"]["namespace"] == "Custom/QIS"
    service = by_kind("staging", "Service")["qis-adot-collector"]["spec"]
    assert {p["port"] for p in service["ports"]} == {4317, 4318}


# ---- CloudFormation parameter files (infra/cloudformation/deploy.sh reads them) --------

TEMPLATES = ROOT / "infra" / "cloudformation"
STACKS = ("foundation", "network", "cluster", "data", "events", "identity", "edge", "monitoring")
# Parameters without a default that docs/deploy.md passes on deploy.sh's command line.
ON_COMMAND_LINE = {
    "cluster": {"ApiAccessCidrs"},
    "identity": {"LoadBalancerControllerPolicyArn"},
    "edge": {"ApiHostName", "HostedZoneId"},
    # The ALB and its target group are the api Ingress's, known once the chart runs.
    "monitoring": {"LoadBalancerFullName", "TargetGroupFullName"},
}


class _TagsIgnored(yaml.SafeLoader):
    """Reads a template's Parameters; intrinsic functions elsewhere become None."""


_TagsIgnored.add_multi_constructor("!", lambda _loader, _suffix, _node: None)


def template_parameters(stack: str) -> dict[str, dict[str, Any]]:
    text = (TEMPLATES / f"{stack}.yaml").read_text(encoding="utf-8")
    parameters: dict[str, dict[str, Any]] = yaml.load(text, Loader=_TagsIgnored)["Parameters"]  # noqa: S506
    return parameters


def parameter_file(env: str, stack: str) -> dict[str, str]:
    values = {}
    for line in (TEMPLATES / "parameters" / env / f"{stack}.params").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, line
            values[name] = value
    return values


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("stack", STACKS)
def test_parameter_files_fit_their_templates(env: str, stack: str) -> None:
    declared = template_parameters(stack)
    given = parameter_file(env, stack)
    assert given["Environment"] == env
    assert set(given) <= set(declared), set(given) - set(declared)
    for name, value in given.items():
        allowed = declared[name].get("AllowedValues")
        if allowed is not None:
            assert value in [str(v) for v in allowed], (name, value)
        if declared[name]["Type"] == "Number":
            number = float(value)
            assert number >= declared[name].get("MinValue", number), name
            assert number <= declared[name].get("MaxValue", number), name
    required = {n for n, p in declared.items() if "Default" not in p}
    assert required - set(given) == ON_COMMAND_LINE.get(stack, set())
