"""Record the real services' EMF under load, for `qis alarms evaluate` / `dashboards render`.

    .venv/bin/python -m benchmarks.e2e.alarm_demo --minutes 11 --out .local/alarm-demo/healthy
    .venv/bin/python -m benchmarks.e2e.alarm_demo --minutes 11 --slow-broker \\
        --out .local/alarm-demo/slow-broker

Starts api + worker + scheduler on the local stack with EMF metrics to a file (10 s
export interval), drives a steady open-loop load (single and 100-observation requests
plus latest reads) to loopback, then evaluates every alarm and renders the dashboards.
`--slow-broker` injects latency by pausing the Kafka broker (SIGSTOP) 250 ms of every
400 ms while the load runs: acks wait, so ingestion latency rises, as with a slow MSK.
The run is bounded by `--minutes` and stops by itself. Progress goes to stderr: a line
per step (the load's elapsed minutes included) on a terminal, JSON lines otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.entrypoints.progress import Progress
from benchmarks.e2e.processes import (
    REPO,
    VENV_BIN,
    Process,
    env,
    free_port,
    prepare_stack,
    wait_live,
)
from benchmarks.loadgen import open_loop, request_bytes


def kafka_pid() -> int:
    return int((REPO / ".local" / "kafka" / "kafka.pid").read_text().strip())


async def slow_broker(until: float) -> None:
    """Pause the broker 250 ms of every 400 ms until `until` (always resumed at the end)."""
    pid = kafka_pid()
    try:
        while time.monotonic() < until:
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(0.25)
            os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(0.15)
    finally:
        os.kill(pid, signal.SIGCONT)


def live_body(prefix: str, start: int, count: int) -> bytes:
    """Observations of the current minute's snap: 200 series x 5 sources, on time."""
    now = datetime.now(UTC)
    snap = now.replace(second=0, microsecond=0).isoformat().replace("+00:00", "Z")
    observed = now.isoformat().replace("+00:00", "Z")
    items = [
        {
            "reference_data_id": f"{prefix}-{(n // 5) % 200:03d}",
            "source": f"src{n % 5}",
            "snap": snap,
            "value": 100.0 + (n % 7) * 0.01,
            "observed_at": observed,
        }
        for n in range(start, start + count)
    ]
    return request_bytes("POST", "/v1/observations", json.dumps({"observations": items}).encode())


async def drive(port: int, seconds: float, prefix: str) -> None:
    def latest(i: int) -> bytes:
        snap = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
        stamp = snap.isoformat().replace("+00:00", "Z")
        return request_bytes(
            "GET", f"/v1/reference-data/{prefix}-{i % 200:03d}/official-values/{stamp}"
        )

    await asyncio.gather(
        open_loop(port, lambda i: live_body(prefix, i, 1), 20, seconds, 16),
        open_loop(port, lambda i: live_body(prefix, i * 100, 100), 2, seconds, 8),
        open_loop(port, latest, 20, seconds, 16),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=11)
    parser.add_argument("--slow-broker", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = args.out / "metrics.emf.jsonl"
    metrics.unlink(missing_ok=True)
    progress = Progress("alarm demo", steps=6)
    with progress.step("local stack: up, migrations, topics"):
        prepare_stack()
    settings = {
        "QIS_TELEMETRY__METRICS_EXPORTER": "file",
        "QIS_TELEMETRY__METRICS_FILE": str(metrics),
        "QIS_TELEMETRY__METRICS_INTERVAL_SECONDS": "10",
    }
    port = free_port()
    processes: list[Process] = []
    try:
        with progress.step("start api, worker, scheduler"):
            api_env = env(QIS_API__PORT=str(port), **settings)
            processes.append(Process("demo-api", [str(VENV_BIN / "qis"), "api"], api_env))
            processes.append(
                Process("demo-worker", [str(VENV_BIN / "qis"), "worker"], env(**settings))
            )
            processes.append(
                Process("demo-scheduler", [str(VENV_BIN / "qis"), "scheduler"], env(**settings))
            )
            wait_live(processes[0], port)
        seconds = args.minutes * 60
        prefix = "DEMO" + uuid.uuid4().hex[:6].upper()
        load = "slowed-broker load" if args.slow_broker else "steady load"

        async def run() -> None:
            tasks = [drive(port, seconds, prefix)]
            if args.slow_broker:
                tasks.append(slow_broker(time.monotonic() + seconds))
            with progress.step(f"{load} for {args.minutes:g} min") as step:
                started = time.monotonic()
                running = asyncio.gather(*tasks)
                while not running.done():
                    step.update(round(time.monotonic() - started), round(seconds), "s")
                    await asyncio.wait({running}, timeout=1.0)
                await running

        asyncio.run(run())
    finally:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            os.kill(kafka_pid(), signal.SIGCONT)
        with progress.step("stop the services (last EMF export)"):
            for process in processes:
                process.stop()  # flushes the last EMF export
    qis = str(VENV_BIN / "qis")
    with progress.step("evaluate the alarms"):
        evaluation = subprocess.run(
            [qis, "alarms", "evaluate", "--metrics", str(metrics)],
            capture_output=True,
            text=True,
            check=False,
        )
    (args.out / "evaluation.txt").write_text(evaluation.stdout + evaluation.stderr)
    print(evaluation.stdout)
    with progress.step("render the dashboards"):
        subprocess.run(
            [
                *(qis, "dashboards", "render", "--metrics", str(metrics)),
                *("--out", str(args.out / "render")),
            ],
            check=False,
        )
    print(f"rendered: {args.out / 'render' / 'index.html'}")


if __name__ == "__main__":
    main()
