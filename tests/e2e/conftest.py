"""E2E fixtures: real `qis api` and `qis worker` processes against the real stack."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.adapters.kafka import ensure_topics
from app.adapters.postgres.migrate import bundled_migrations, migrate
from app.adapters.postgres.pool import open_pool
from app.settings import Settings
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


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
    env.update(
        QIS_DB__WRITER_DSN=settings.db.writer_dsn,
        QIS_DB__READER_DSN=settings.db.reader_dsn,
        QIS_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        QIS_REDIS__URL=settings.redis.url,
        QIS_KAFKA__ACK_TIMEOUT_SECONDS="3",
        # The defaults unless the test run sets them: a run of its own (its database,
        # topic and consumer group) leaves other runs on the same stack alone.
        QIS_KAFKA__OBSERVATIONS_TOPIC=settings.kafka.observations_topic,
        QIS_KAFKA__DLQ_TOPIC=settings.kafka.dlq_topic,
        QIS_WORKER__GROUP_ID=settings.worker.group_id,
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


@pytest.fixture(scope="session", autouse=True)
async def running_stack(settings: Settings) -> None:
    stack("up")
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


@pytest.fixture(scope="session")
def scheduler(settings: Settings, running_stack: None) -> Iterator[Service]:
    """A running `qis scheduler` (closes windows, relays the outbox to Kafka)."""
    service = Service(
        "scheduler", ["scheduler"], service_env(settings, QIS_SCHEDULER__INTERVAL_SECONDS="0.2")
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
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        yield client


def repo_path(*parts: str) -> Path:
    return REPO.joinpath(*parts)
