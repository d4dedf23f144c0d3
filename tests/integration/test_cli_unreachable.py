"""`qis` commands whose PostgreSQL or Kafka does not answer: one line on stderr, exit 2.

Each command runs as a subprocess (the real entry point, logging and exit code) with its
addresses pointing at a loopback port nothing listens on. The last cases keep one real
service of the local stack reachable, so the failure comes from the other one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from app.settings import Settings


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def qis(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
    environ |= {"QIS_API__PORT": str(closed_port()), "QIS_KAFKA__REQUEST_TIMEOUT_MS": "3000"}
    environ |= env
    return subprocess.run(
        [sys.executable, "-m", "app.entrypoints.cli", *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=90,
    )


def down(settings: Settings, *, db: bool, kafka: bool) -> dict[str, str]:
    pg, broker = f"127.0.0.1:{closed_port()}", f"127.0.0.1:{closed_port()}"
    dsn = f"postgresql://qis:qis@{pg}/qis" if db else settings.db.writer_dsn
    return {
        "QIS_DB__WRITER_DSN": dsn,
        "QIS_DB__READER_DSN": dsn,
        "QIS_KAFKA__BOOTSTRAP_SERVERS": broker if kafka else settings.kafka.bootstrap_servers,
        "QIS_REDIS__URL": f"redis://127.0.0.1:{closed_port()}/0",
    }


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "service"),
    [
        (("db", "migrate"), "PostgreSQL"),
        (("audit", "verify"), "PostgreSQL"),
        (("backup",), "PostgreSQL"),
        (("kafka", "topics"), "Kafka"),
        # the api, the worker and the scheduler open their pools first (they create no
        # topics: `qis kafka topics`, the migrations job, does)
        (("worker",), "PostgreSQL"),
        (("scheduler",), "PostgreSQL"),
        (("api",), "PostgreSQL"),
    ],
)
def test_a_command_whose_services_are_down_says_so_in_one_line(
    settings: Settings, argv: tuple[str, ...], service: str
) -> None:
    env = down(settings, db=True, kafka=True)
    address = {
        "PostgreSQL": env["QIS_DB__WRITER_DSN"].rsplit("@", 1)[1].split("/")[0],
        "Kafka": env["QIS_KAFKA__BOOTSTRAP_SERVERS"],
    }[service]
    reason = "connection refused" if service == "PostgreSQL" else "no broker answered"

    done = qis(*argv, **env)

    assert done.returncode == 2, done.stderr
    assert last_line(done) == f"qis: cannot reach {service} at {address} ({reason})"
    assert done.stdout == ""


@pytest.mark.parametrize("argv", [("backup",), ("restore-drill",)])
def test_backups_with_s3_down(
    settings: Settings, running_stack: None, argv: tuple[str, ...]
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    done = qis(
        *argv,
        QIS_DB__WRITER_DSN=settings.db.writer_dsn,
        QIS_LAKE__ENDPOINT_URL=endpoint,
        QIS_LAKE__ACCESS_KEY_ID="testing",
        QIS_LAKE__SECRET_ACCESS_KEY="testing",
    )
    assert done.returncode == 2, done.stderr
    assert last_line(done) == f"qis: cannot reach S3 at {endpoint} (could not connect)"
    assert done.stdout == ""


def test_dlq_list_with_kafka_down(settings: Settings) -> None:
    env = down(settings, db=True, kafka=True)
    done = qis("dlq", "list", **env)
    assert done.returncode == 2
    broker = env["QIS_KAFKA__BOOTSTRAP_SERVERS"]
    assert last_line(done) == f"qis dlq: list: cannot reach Kafka at {broker} (no broker answered)"


@pytest.mark.parametrize("argv", [("worker",), ("scheduler",)])
def test_worker_and_scheduler_with_kafka_up_and_postgresql_down(
    settings: Settings, running_stack: None, argv: tuple[str, ...]
) -> None:
    env = down(settings, db=True, kafka=False)
    address = env["QIS_DB__WRITER_DSN"].rsplit("@", 1)[1].split("/")[0]
    done = qis(*argv, **env)
    assert done.returncode == 2, done.stderr
    assert last_line(done) == f"qis: cannot reach PostgreSQL at {address} (connection refused)"


@pytest.mark.parametrize("argv", [("api",), ("worker",), ("scheduler",)])
def test_a_service_with_postgresql_up_and_kafka_down(
    settings: Settings, running_stack: None, argv: tuple[str, ...]
) -> None:
    env = down(settings, db=False, kafka=True)
    done = qis(*argv, **env)
    assert done.returncode == 2, done.stderr
    broker = env["QIS_KAFKA__BOOTSTRAP_SERVERS"]
    assert last_line(done) == f"qis: cannot reach Kafka at {broker} (no broker answered)"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (("db", "migrate"), "qis: cannot reach PostgreSQL at {address} (timed out)"),
        (("kafka", "topics"), "qis: cannot reach Kafka at {address} (no broker answered)"),
    ],
)
def test_a_server_that_never_answers_ends_after_the_configured_timeout(
    silent_port: int, argv: tuple[str, ...], line: str
) -> None:
    address = f"127.0.0.1:{silent_port}"
    done = qis(
        *argv,
        QIS_DB__WRITER_DSN=f"postgresql://qis:qis@{address}/qis",
        QIS_DB__CONNECT_TIMEOUT_SECONDS="2",
        QIS_KAFKA__BOOTSTRAP_SERVERS=address,
        QIS_KAFKA__REQUEST_TIMEOUT_MS="2000",
    )
    assert done.returncode == 2, done.stderr
    assert last_line(done) == line.format(address=address)


def test_api_processes_that_cannot_start_say_why_and_stop_the_parent(settings: Settings) -> None:
    # QIS_API__PROCESSES=2: each process prints its line; the parent stops the other and
    # exits 3 (a process could not start), leaving no process behind.
    env = down(settings, db=True, kafka=True)
    address = env["QIS_DB__WRITER_DSN"].rsplit("@", 1)[1].split("/")[0]
    done = qis("api", QIS_API__PROCESSES="2", **env)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    reason = f"qis: cannot reach PostgreSQL at {address} (connection refused)"
    assert 1 <= lines.count(reason) <= 2, done.stderr
    exits = [json.loads(line) for line in lines if '"api process exited"' in line]
    assert len(exits) == 2, done.stderr
    # the one that failed first exits 3; the other failed too or was stopped (0)
    codes = {e["exit_code"] for e in exits}
    assert 3 in codes, done.stderr
    assert codes <= {0, 3}, done.stderr
