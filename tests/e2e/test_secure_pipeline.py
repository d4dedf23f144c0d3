"""The whole service on the local stack's secured endpoints: `qis api`, `qis worker` and
`qis scheduler` processes configured by `stack.sh env secure` (Kafka SASL_SSL + SCRAM,
PostgreSQL verify-full on the TLS-only cluster, Redis TLS + AUTH) ingest, reconcile,
serve and relay a snap; their logs hold no secret."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from app.adapters.kafka import new_consumer
from app.settings import Settings, load_settings
from tests.conftest import unique_series
from tests.e2e.conftest import ISSUER_URL, QIS, Service, bearer, free_port, wait_ready
from tests.e2e.reconciliation_helpers import configure, current_snap, item, official_value, post
from tests.stack import REPO, stack

pytestmark = pytest.mark.e2e

ABC = ["a", "b", "c"]


def _secure_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
    env["QIS_AUTH__ISSUER"] = ISSUER_URL
    for line in stack("env", "secure").splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export":
            name, _, value = words[1].partition("=")
            env[name] = value
    # Topics of their own: the plaintext e2e processes share the broker.
    prefix = "qis.secure"
    env |= {
        "QIS_KAFKA__OBSERVATIONS_TOPIC": f"{prefix}.observations.v1",
        "QIS_KAFKA__DLQ_TOPIC": f"{prefix}.observations.dlq.v1",
        "QIS_KAFKA__OFFICIAL_VALUES_TOPIC": f"{prefix}.official-values.v1",
        "QIS_KAFKA__QUALITY_ALERTS_TOPIC": f"{prefix}.quality-alerts.v1",
        "QIS_KAFKA__AUDIT_TOPIC": f"{prefix}.audit.v1",
        "QIS_KAFKA__OBSERVATIONS_PARTITIONS": "3",
        "QIS_KAFKA__EVENTS_PARTITIONS": "2",
        "QIS_KAFKA__ACK_TIMEOUT_SECONDS": "3",
        "QIS_WORKER__GROUP_ID": "qis-worker-secure",
        "QIS_SCHEDULER__INTERVAL_SECONDS": "0.2",
        # The shared database holds every test's rows: its scheduler archives nothing.
        "QIS_LAKE__ENABLED": "false",
        # A TLS handshake on a busy two-core runner can exceed the 0.25 s production bound.
        "QIS_REDIS__SOCKET_TIMEOUT_SECONDS": "2",
    }
    return env


def _wait_logged(service: Service, text: bytes, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while text not in service.log.read_bytes():
        assert service.process is not None
        assert service.process.poll() is None, f"{service.name} exited:\n{service.tail()}"
        assert time.monotonic() < deadline, f"{service.name}: no {text!r}:\n{service.tail()}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def secure_service(running_stack: None) -> Iterator[tuple[str, dict[str, str], list[Service]]]:
    env = _secure_env()
    for command in (["db", "migrate"], ["kafka", "topics"]):
        done = subprocess.run(
            [QIS, *command], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    run = uuid.uuid4().hex[:6]
    port = free_port()
    services = [
        Service(f"secure-worker-{run}", ["worker"], env),
        Service(f"secure-scheduler-{run}", ["scheduler"], env),
        Service(f"secure-api-{run}", ["api"], env | {"QIS_API__PORT": str(port)}),
    ]
    for service in services:
        service.start()
    try:
        _wait_logged(services[1], b'"scheduler started"')
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url, services[2])
        yield base_url, env, services
    finally:
        codes = {s.name: s.stop() for s in reversed(services)}
        assert set(codes.values()) == {0}, codes


async def test_a_snap_flows_through_the_secured_endpoints(
    secure_service: tuple[str, dict[str, str], list[Service]],
) -> None:
    base_url, env, services = secure_service
    settings: Settings = load_settings({k: v for k, v in env.items() if k.startswith("QIS_")})
    series, snap = unique_series("S"), current_snap()
    async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=bearer()) as http:
        ready = (await http.get("/health/ready")).json()
        assert ready["checks"] == {
            "postgres": "ok",
            "kafka": "ok",
            "redis": "ok",
            "documentdb": "ok",
        }
        await configure(http, series, expected_sources=ABC)
        # The series' descriptor, through the document store's TLS listener.
        descriptor = {
            "instrument": {"asset_class": "fx", "name": "secured", "currency": "EUR"},
            "vendor_symbols": [{"vendor": "a", "symbol": f"{series} Curncy"}],
        }
        stored = await http.put(f"/v1/reference-data/{series}/descriptor", json=descriptor)
        assert stored.status_code == 200, stored.text
        assert stored.json()["revision"] == 1
        read = await http.get(f"/v1/reference-data/{series}/descriptor")
        assert read.json()["descriptor"]["vendor_symbols"][0]["symbol"] == f"{series} Curncy"
        await post(
            http,
            item(series, "a", 100.00, snap),
            item(series, "b", 100.02, snap),
            item(series, "c", 99.99, snap),
        )
        v1 = await official_value(http, series, snap)
        assert (v1["version"], v1["value"], v1["status"]) == (1, 100.0, "official")
        # Served again: from the cache (Redis over TLS) or PostgreSQL, the same answer.
        again = await official_value(http, series, snap)
        assert again == v1

    # The scheduler relayed the version to Kafka over SASL_SSL; read it back the same way.
    consumer = new_consumer(settings.kafka, f"qis-test-{uuid.uuid4().hex[:8]}", "qis-test")
    consumer.subscribe([settings.kafka.official_values_topic])
    await consumer.start()
    found: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(30):
            while not found:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        event = json.loads(record.value or b"{}")
                        if series in json.dumps(event):
                            found.append(event)
    finally:
        await consumer.stop()
    assert found

    secrets = [
        env["QIS_KAFKA__SASL_PASSWORD"],
        env["QIS_REDIS__PASSWORD"],
        f":{env['QIS_DB__WRITER_DSN'].split(':')[2].split('@')[0]}@",
    ]
    for service in services:
        log = service.log.read_text(errors="replace")
        assert log, service.name
        for secret in secrets:
            assert secret not in log, f"{service.name} logged a secret"
