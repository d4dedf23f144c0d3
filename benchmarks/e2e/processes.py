"""Start the stack and `qis` processes for benchmarks; bounded waits, clean stops."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from app.adapters.postgres.migrate import create_migrated_database
from app.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
LOGS = REPO / ".local" / "bench-logs"


def stack_settings() -> Settings:
    """The settings of the environment (`QIS_*`: a stack on other ports, say), as the
    `qis` processes the benchmarks start read them."""
    return load_settings(os.environ)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_stack() -> None:
    """Stack up (idempotent), migrations, topics."""
    subprocess.run(["bash", str(REPO / "infra/local/stack.sh"), "up"], check=True)
    subprocess.run([str(VENV_BIN / "qis"), "db", "migrate"], check=True, env=env())
    subprocess.run(
        [str(VENV_BIN / "qis"), "kafka", "topics"], check=True, env=env(), stdout=subprocess.DEVNULL
    )


def telemetry_settings(on: bool, name: str) -> dict[str, str]:
    """Telemetry off, or on as in production: the seed's sampling rates, spans to a
    JSON-lines file and EMF metrics to a file every 10 s (so both exporters really run),
    as `LOGS/<name>-traces.jsonl` and `LOGS/<name>-metrics.emf.jsonl`."""
    if not on:
        return {"QIS_TELEMETRY__ENABLED": "false"}
    return {
        "QIS_TELEMETRY__TRACES_EXPORTER": "file",
        "QIS_TELEMETRY__TRACES_FILE": str(LOGS / f"{name}-traces.jsonl"),
        "QIS_TELEMETRY__METRICS_EXPORTER": "file",
        "QIS_TELEMETRY__METRICS_FILE": str(LOGS / f"{name}-metrics.emf.jsonl"),
        "QIS_TELEMETRY__METRICS_INTERVAL_SECONDS": "10",
    }


# A fixed issuer URL for benchmark tokens: the api reads the keys from BENCH_AUTH's file.
BENCH_ISSUER = "http://127.0.0.1:9/qis-bench-issuer"
BENCH_AUTH = REPO / ".local" / "bench-auth"


def auth_settings(on: bool, rate_limit: bool = True) -> dict[str, str]:
    """Authentication of a benchmark's api: off (the benchmarks of other things say so
    explicitly), or on as in production, checking `bench_token()`s, with rate limits so
    high that they are taken (one Redis script per request) but never refuse
    (`rate_limit=False`: no rate limiting at all)."""
    if not on:
        return {"QIS_AUTH__ENABLED": "false"}
    _bench_issuer()
    return {
        "QIS_AUTH__ENABLED": "true",
        "QIS_RATE_LIMIT__ENABLED": "true" if rate_limit else "false",
        "QIS_AUTH__ISSUER": BENCH_ISSUER,
        "QIS_AUTH__JWKS_URL": (BENCH_AUTH / "jwks.json").as_uri(),
        **{
            f"QIS_RATE_LIMIT__{scope}_{what}": "1000000000"
            for scope in ("INGEST", "READ", "ADMIN")
            for what in ("PER_SECOND", "BURST")
        },
    }


def _bench_issuer() -> Any:
    import json

    from app.entrypoints.dev_issuer import LocalIssuer

    issuer = LocalIssuer(BENCH_AUTH, BENCH_ISSUER)
    (BENCH_AUTH / "jwks.json").write_text(json.dumps(issuer.jwks()))
    return issuer


def bench_token(*scopes: str) -> str:
    """An access token (1 h) the api of `auth_settings(True)` accepts."""
    return str(_bench_issuer().mint("qis-bench", list(scopes or ("qis/ingest", "qis/read"))))


def env(**settings: str) -> dict[str, str]:
    """The parent environment (its QIS_* settings, e.g. a stack on other ports, included)
    plus the given settings, which win. Authentication is off unless `settings` turn it on
    (`auth_settings(True)`): these benchmarks measure something else."""
    return {
        "QIS_TELEMETRY__LOG_LEVEL": "WARNING",
        # These benchmarks measure the pipeline: their schedulers archive nothing.
        "QIS_LAKE__ENABLED": "false",
        **auth_settings(False),
        **os.environ,
        **settings,
    }


class Process:
    """A benchmark child process with its log file."""

    def __init__(self, name: str, args: list[str], environment: dict[str, str]) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log = LOGS / f"{name}.log"
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(args, env=environment, stdout=out, stderr=out, cwd=REPO)

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_api(port: int, **settings: str) -> Process:
    """The benchmark app (production routes + ceiling routes) on `port`, once ready."""
    process = Process(
        f"api-{port}",
        [sys.executable, "-m", "benchmarks.e2e.serve", str(port)],
        env(**settings),
    )
    return wait_live(process, port)


def wait_live(
    process: Process, port: int, timeout: float = 60, probe: str = "/health/live"
) -> Process:
    """Return `process` once `probe` answers 2xx on `port`; stop it and raise otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"api exited; see {process.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=2):
                return process
        except OSError:
            time.sleep(0.2)
    process.stop()
    raise RuntimeError(f"api not ready in {timeout} s; see {process.log}")


def start_worker(**settings: str) -> Process:
    return Process("worker", [str(VENV_BIN / "qis"), "worker"], env(**settings))


async def own_database(name: str, fresh: bool = False) -> str:
    """DSN of database `name` on the stack's server, created and migrated if needed
    (`fresh`: dropped and created again, so every run starts from empty tables).

    A database of its own keeps the benchmark out of other users' way and them out of its:
    advisory locks (the journal, the series locks) are per database, so concurrent tests
    on the shared `qis` database do not queue with the measured worker.
    """
    return await create_migrated_database(stack_settings().db.writer_dsn, name, fresh=fresh)


def own_topic_and_group(prefix: str) -> dict[str, str]:
    """Settings giving a benchmark's api and worker an observations topic and a consumer
    group of their own: other `qis worker`s on this machine (tests, other benchmarks)
    neither join the group mid-measurement nor inherit the benchmark's backlog."""
    return {
        "QIS_KAFKA__OBSERVATIONS_TOPIC": f"qis.observations.{prefix.lower()}",
        "QIS_WORKER__GROUP_ID": f"{prefix.lower()}-worker",
    }


def create_topics(settings: dict[str, str]) -> None:
    """The platform's topics under `settings` (e.g. a benchmark's own observations topic)."""
    subprocess.run(
        [str(VENV_BIN / "qis"), "kafka", "topics"],
        env=env(**settings),
        check=True,
        capture_output=True,
        timeout=60,
    )


def database_settings(dsn: str) -> dict[str, str]:
    return {"QIS_DB__WRITER_DSN": dsn, "QIS_DB__READER_DSN": dsn}
