"""`qis api` with `QIS_API__PROCESSES=2`: two processes serve one port, each keeps its
own L1 cache correct through its own publication listener, and SIGTERM ends them all.

The api runs on a database of its own; versions are written straight into it (the
trigger announces them as the worker's would). Which process served a read is found
from the kernel: the server side of the read's connection is a socket only the
accepting process holds (/proc/net/tcp gives its inode, /proc/<pid>/fd its owner).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.settings import Settings
from tests.conftest import unique_series
from tests.e2e.conftest import Service, bearer, free_port, service_env, wait_ready
from tests.integration.conftest import _fresh_database
from tests.integration.test_query import insert_version, ts

SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)
GRACE_SECONDS = 10


def api_processes(parent: int) -> list[int]:
    """The api processes uvicorn spawned (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return sorted(
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    )


def _server_socket_inode(port: int, client_port: int) -> str | None:
    """The inode of the server side of the loopback connection from `client_port`."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port:
            return fields[9]
    return None


def serving_process(port: int, client_port: int, candidates: list[int]) -> int:
    inode = _server_socket_inode(port, client_port)
    assert inode is not None, f"no server socket for client port {client_port}"
    for pid in candidates:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError(f"socket {inode} is held by none of {candidates}")


class Api:
    def __init__(self, service: Service, port: int) -> None:
        self.service, self.port = service, port
        self.base_url = f"http://127.0.0.1:{port}"
        self.headers = bearer()

    def read(self, path: str, pids: list[int]) -> tuple[dict[str, Any], int]:
        """GET over a fresh connection: the body and the process that served it."""
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30) as client:
            response = client.get(path)
            assert response.status_code == 200, response.text
            client_port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
            return response.json(), serving_process(self.port, client_port, pids)

    def reads(self, path: str, pids: list[int], at_least: int) -> list[tuple[dict[str, Any], int]]:
        """`at_least` reads, more until every process served one (at most 400)."""
        done: list[tuple[dict[str, Any], int]] = []
        while len(done) < at_least or {pid for _, pid in done} != set(pids):
            assert len(done) < 400, f"only {sorted({p for _, p in done})} of {pids} served"
            done.append(self.read(path, pids))
        return done


def publish(dsn: str, series: str, version: int, value: float) -> None:
    """Insert a version; the trigger announces it to every listener on commit."""

    async def insert() -> None:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            await insert_version(pool, series, SNAP, version, value, datetime.now(UTC))
        finally:
            await pool.close()

    asyncio.run(insert())


@pytest.fixture
async def private_dsn(settings: Settings, running_stack: None) -> AsyncIterator[str]:
    async with _fresh_database(settings) as dsn:
        yield dsn


@pytest.fixture
def two_process_api(settings: Settings, private_dsn: str) -> Iterator[Api]:
    port = free_port()
    env = service_env(
        settings,
        QIS_API__PORT=str(port),
        QIS_API__PROCESSES="2",
        QIS_API__SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
        QIS_DB__WRITER_DSN=private_dsn,
        QIS_DB__READER_DSN=private_dsn,
        QIS_DOCUMENTS__ENABLED="false",
    )
    service = Service("api-processes", ["api"], env)
    service.start()
    try:
        wait_ready(f"http://127.0.0.1:{port}", service, timeout=120)
        yield Api(service, port)
    finally:
        if service.process is not None and service.process.poll() is None:
            service.kill()


def test_two_processes_serve_fresh_versions_and_stop_with_exit_0(
    two_process_api: Api, private_dsn: str
) -> None:
    api = two_process_api
    assert api.service.process is not None
    parent = api.service.process.pid
    log_offset = api.service.log.stat().st_size
    pids = api_processes(parent)
    assert len(pids) == 2, pids

    series = unique_series("MP")
    path = f"/v1/reference-data/{series}/official-values/{ts(SNAP)}"
    publish(private_dsn, series, 1, 100.0)
    time.sleep(1.2)  # past the replica-lag guard: reads are now cached in L1
    warm = api.reads(path, pids, at_least=10)
    assert {body["version"] for body, _ in warm} == {1}
    # Every process served (and cached) version 1 at least once.
    assert {pid for _, pid in warm} == set(pids)

    publish(private_dsn, series, 2, 101.0)
    deadline = time.monotonic() + 5
    while api.read(path, pids)[0]["version"] != 2:
        assert time.monotonic() < deadline, "version 2 not served within 5 s"
        time.sleep(0.05)
    time.sleep(0.2)  # NOTIFY reaches each listener within milliseconds
    fresh = api.reads(path, pids, at_least=40)
    stale = [(body["version"], pid) for body, pid in fresh if body["version"] != 2]
    assert stale == [], f"stale L1 copies served: {stale}"
    assert {pid for _, pid in fresh} == set(pids)
    assert {body["supersedes"] for body, _ in fresh} == {1}

    api.service.signal(signal.SIGTERM)
    code = api.service.process.wait(GRACE_SECONDS + 20)
    assert code == 0, api.service.tail()
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []  # no orphans
    exits = [
        json.loads(line)
        for line in api.service.log.read_bytes()[log_offset:].decode().splitlines()
        if '"api process exited"' in line
    ]
    assert sorted((e["pid"], e["exit_code"]) for e in exits) == [(pid, 0) for pid in pids]
