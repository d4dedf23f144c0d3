"""E2E fixtures: real `qis api` and `qis worker` processes against the real stack."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple

import asyncpg
import httpx
import pytest
from qis_client import Token, TokenProvider, client_credentials

from app.adapters.kafka import ensure_topics
from app.adapters.postgres.migrate import bundled_migrations, migrate
from app.adapters.postgres.pool import open_pool
from app.entrypoints.dev_issuer import LocalIssuer
from app.settings import EventBridgeSettings, Settings, TimestreamSettings
from tests import auth
from tests.stack import REPO, stack

QIS = str(REPO / ".venv" / "bin" / "qis")
LOGS = REPO / ".local" / "test-logs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """One `qis` subprocess, with its log kept for failure messages."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = LOGS / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [QIS, *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then wait; return the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.name} ignored SIGTERM for {timeout}s:\n{self.tail()}"
            ) from None

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# `qis dev issuer` on a port of its own for the session (started by `running_stack`);
# every api process of the e2e tests checks its tokens, fetching its JWKS over HTTP.
ISSUER_URL = f"http://127.0.0.1:{free_port()}"
ADMIN_CLIENT = "qis-local-admin"


def issuer() -> LocalIssuer:
    """The e2e issuer's key and clients, to sign odd tokens with (tests/auth.py's state)."""
    return auth.issuer(ISSUER_URL)


def token_provider(client_id: str = ADMIN_CLIENT, *scopes: str) -> TokenProvider:
    """qis-client's provider for the e2e issuer's token endpoint (client credentials)."""
    secret = issuer().clients[client_id].secret
    return client_credentials(f"{ISSUER_URL}/oauth2/token", client_id, secret, scopes)


def bearer(client_id: str = ADMIN_CLIENT, *scopes: str) -> dict[str, str]:
    """An Authorization header with a token of the e2e issuer's token endpoint."""
    token: Token = token_provider(client_id, *scopes)()
    return {"Authorization": f"Bearer {token.access_token}"}


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
    env.update(
        QIS_AUTH__ISSUER=ISSUER_URL,
        # The shared database holds every test's rows: its scheduler archives nothing.
        QIS_LAKE__ENABLED="false",
        QIS_DB__WRITER_DSN=settings.db.writer_dsn,
        QIS_DB__READER_DSN=settings.db.reader_dsn,
        QIS_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        QIS_REDIS__URL=settings.redis.url,
        # Descriptor documents on the stack's document store (FerretDB), in the tests' database.
        QIS_DOCUMENTS__ENABLED="true",
        QIS_DOCUMENTS__URL=settings.documents.url,
        QIS_DOCUMENTS__DATABASE=settings.documents.database,
        # The topics and the consumer group of the tests' settings (a run may use its own).
        QIS_KAFKA__OBSERVATIONS_TOPIC=settings.kafka.observations_topic,
        QIS_KAFKA__DLQ_TOPIC=settings.kafka.dlq_topic,
        QIS_KAFKA__OFFICIAL_VALUES_TOPIC=settings.kafka.official_values_topic,
        QIS_KAFKA__QUALITY_ALERTS_TOPIC=settings.kafka.quality_alerts_topic,
        QIS_KAFKA__AUDIT_TOPIC=settings.kafka.audit_topic,
        QIS_WORKER__GROUP_ID=settings.worker.group_id,
        QIS_KAFKA__ACK_TIMEOUT_SECONDS="3",
        # Tests of other things send bursts (the fuzzer: hundreds of PUTs); the rate-limit
        # test sets its own limits.
        QIS_RATE_LIMIT__ADMIN_BURST="100000",
        QIS_RATE_LIMIT__INGEST_BURST="100000",
        QIS_RATE_LIMIT__READ_BURST="100000",
    )
    env.update(extra)
    return env


def wait_ready(base_url: str, service: Service, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        assert service.process is not None
        if service.process.poll() is not None:
            raise AssertionError(f"{service.name} exited:\n{service.tail()}")
        try:
            response = httpx.get(f"{base_url}/health/ready", timeout=2)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"{service.name} not ready in {timeout}s ({last}):\n{service.tail()}")


def start_issuer() -> Service:
    """`qis dev issuer` at ISSUER_URL on the tests' issuer state; waits for its JWKS."""
    port = ISSUER_URL.rpartition(":")[2]
    service = Service(
        "issuer",
        ["dev", "issuer", "--port", port, "--dir", str(auth.STATE), "--url", ISSUER_URL],
        service_env(Settings()),
    )
    issuer()  # the state exists before the process reads it
    service.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert service.process is not None
        assert service.process.poll() is None, f"issuer exited:\n{service.tail()}"
        try:
            if httpx.get(f"{ISSUER_URL}/.well-known/jwks.json", timeout=2).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"issuer not ready:\n{service.tail()}")


@pytest.fixture(scope="session", autouse=True)
async def running_stack(settings: Settings) -> AsyncIterator[None]:
    issuer_process = start_issuer()
    try:
        await _stack_ready(settings)
        yield
    finally:
        issuer_process.stop()


async def _stack_ready(settings: Settings) -> None:
    # On a fresh machine `up` also builds FerretDB once (a few minutes on two cores).
    stack("up", timeout=1200)
    conn = await asyncpg.connect(settings.db.writer_dsn)
    try:
        await migrate(conn, bundled_migrations())
    finally:
        await conn.close()
    await ensure_topics(settings.kafka)


@contextlib.contextmanager
def running_api(settings: Settings, name: str) -> Iterator[str]:
    """A `qis api` process on a free port, ready; its base URL. It must exit 0 when stopped."""
    port = free_port()
    service = Service(name, ["api"], service_env(settings, QIS_API__PORT=str(port)))
    service.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, service)
        yield base_url
    finally:
        code = service.stop()
        assert code == 0, f"{name} exit code {code}:\n{service.tail()}"


@pytest.fixture(scope="session")
def api(settings: Settings, running_stack: None) -> Iterator[str]:
    """Base URL of a running `qis api`."""
    with running_api(settings, "api") as base_url:
        yield base_url


@pytest.fixture(scope="session")
def worker(settings: Settings, running_stack: None) -> Iterator[Service]:
    """A running `qis worker`; tests may kill and restart it."""
    service = Service("worker", ["worker"], service_env(settings))
    service.start()
    try:
        yield service
    finally:
        service.stop()


class Downstream(NamedTuple):
    """The session's EventBridge bus (its rules' SQS queues) and Timestream database, on
    the stack's moto server: the e2e scheduler copies every event there, as `make run`."""

    eventbridge: EventBridgeSettings
    timestream: TimestreamSettings
    queues: dict[str, str]  # rule name -> queue URL

    def env(self) -> dict[str, str]:
        bus, series = self.eventbridge, self.timestream
        return {
            "QIS_EVENTBRIDGE__ENABLED": "true",
            "QIS_EVENTBRIDGE__ENDPOINT_URL": bus.endpoint_url,
            "QIS_EVENTBRIDGE__BUS_NAME": bus.bus_name,
            "QIS_EVENTBRIDGE__ACCESS_KEY_ID": bus.access_key_id,
            "QIS_EVENTBRIDGE__SECRET_ACCESS_KEY": bus.secret_access_key,
            "QIS_TIMESTREAM__ENABLED": "true",
            "QIS_TIMESTREAM__ENDPOINT_URL": series.endpoint_url,
            "QIS_TIMESTREAM__DATABASE": series.database,
            "QIS_TIMESTREAM__ACCESS_KEY_ID": series.access_key_id,
            "QIS_TIMESTREAM__SECRET_ACCESS_KEY": series.secret_access_key,
            "QIS_SCHEDULER__SINK_INTERVAL_SECONDS": "0.2",
        }


@pytest.fixture(scope="session")
async def downstream(settings: Settings, running_stack: None) -> Downstream:
    """A bus, its rules and queues, and a Timestream database of this session's own; the
    sinks' positions are dropped, so they start after the newest event (not where an
    earlier session left them, which would first replay everything since)."""
    from app.adapters.eventbridge_routing import ensure_local_routing
    from app.adapters.timestream import ensure_timeseries

    run = uuid.uuid4().hex[:10]
    bridge = EventBridgeSettings(
        endpoint_url=settings.lake.endpoint_url,
        bus_name=f"qis-e2e-{run}",
        access_key_id="testing",
        secret_access_key="testing",
    )
    series = TimestreamSettings(
        endpoint_url=settings.lake.endpoint_url,
        database=f"qis-e2e-{run}",
        rejected_bucket=f"qis-e2e-rejected-{run}",
        access_key_id="testing",
        secret_access_key="testing",
    )
    _, queues = ensure_local_routing(bridge)
    ensure_timeseries(series)
    conn = await asyncpg.connect(settings.db.writer_dsn)
    try:
        await conn.execute("DELETE FROM relay_positions WHERE name LIKE 'sink.%'")
    finally:
        await conn.close()
    return Downstream(bridge, series, queues)


@pytest.fixture(scope="session")
def scheduler(settings: Settings, running_stack: None, downstream: Downstream) -> Iterator[Service]:
    """A running `qis scheduler` (closes windows, relays the outbox to Kafka and to the
    session's EventBridge bus and Timestream database)."""
    service = Service(
        "scheduler",
        ["scheduler"],
        service_env(settings, QIS_SCHEDULER__INTERVAL_SECONDS="0.2", **downstream.env()),
    )
    offset = service.log.stat().st_size if service.log.exists() else 0
    service.start()
    try:
        deadline = time.monotonic() + 45
        while b'"scheduler started"' not in service.log.read_bytes()[offset:]:
            assert service.process is not None
            assert service.process.poll() is None, f"scheduler exited:\n{service.tail()}"
            assert time.monotonic() < deadline, f"scheduler not started:\n{service.tail()}"
            time.sleep(0.1)
        yield service
    finally:
        code = service.stop()
        assert code == 0, f"scheduler exit code {code}:\n{service.tail()}"


@pytest.fixture(scope="session")
async def pool(settings: Settings, running_stack: None) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(settings.db.writer_dsn, settings.db)
    yield pool
    await pool.close()


@pytest.fixture
async def http(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api, timeout=30, headers=bearer()) as client:
        yield client


def repo_path(*parts: str) -> Path:
    return REPO.joinpath(*parts)
