"""Memory and CPU of each process under load: the figures behind the Helm chart's requests.

    .venv/bin/python -m benchmarks.e2e.footprint [--seconds 60] [--rate 2000] [--out FILE]

Starts `qis api`, `qis worker` and `qis scheduler` (the production entry points, telemetry
on as in production: sampled traces and EMF metrics, here to files) on a database,
observations topic and consumer group of their own, then runs three phases:

1. idle, 10 s: the processes after start-up;
2. ingest: 100-observation requests, open loop at `--rate` observations/s for `--seconds`
   (the worker stores and reconciles, the scheduler relays the new versions);
3. read: GET the official value of the ingested series, closed loop over 8 connections
   for `--seconds` (the caches fill).

Every 0.5 s it reads each process's resident set (VmRSS) from /proc; per phase it
reports the peak RSS and the CPU seconds used (utime + stime) divided by the phase's
wall time, i.e. cores. Loopback only; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.e2e.ingestion import bodies
from benchmarks.e2e.processes import (
    REPO,
    VENV_BIN,
    Process,
    create_topics,
    database_settings,
    env,
    free_port,
    own_database,
    own_topic_and_group,
    prepare_stack,
    telemetry_settings,
    wait_live,
)
from benchmarks.loadgen import closed_loop, open_loop, request_bytes

SERIES = 1000
SNAP = "2026-01-01T00:00:00Z"
_TICK = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    peak_mib: dict[str, float] = field(default_factory=dict)
    cpu_cores: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    ok: int = 0
    errors: int = 0


async def measure(
    name: str, pids: dict[str, int], load: asyncio.Future[object] | None, seconds: float
) -> Phase:
    phase = Phase(name, peak_mib=dict.fromkeys(pids, 0.0))
    cpu_before = {p: cpu_seconds(pid) for p, pid in pids.items()}
    started = time.monotonic()
    deadline = started + seconds
    while True:
        for process, pid in pids.items():
            phase.peak_mib[process] = max(phase.peak_mib[process], rss_mib(pid))
        if load is not None and load.done():
            break
        if load is None and time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
    phase.seconds = time.monotonic() - started
    phase.cpu_cores = {
        p: (cpu_seconds(pid) - cpu_before[p]) / phase.seconds for p, pid in pids.items()
    }
    return phase


async def run(seconds: float, rate: float, isolation: dict[str, str]) -> list[Phase]:
    telemetry = telemetry_settings(True, "footprint")
    port = free_port()
    settings = {**telemetry, **isolation, "QIS_API__PORT": str(port)}
    processes = {
        "api": Process("footprint-api", [str(VENV_BIN / "qis"), "api"], env(**settings)),
        "worker": Process("footprint-worker", [str(VENV_BIN / "qis"), "worker"], env(**settings)),
        "scheduler": Process(
            "footprint-scheduler", [str(VENV_BIN / "qis"), "scheduler"], env(**settings)
        ),
    }
    try:
        wait_live(processes["api"], port, probe="/health/ready")
        pids = {name: p.popen.pid for name, p in processes.items()}
        phases = [await measure("idle", pids, None, 10.0)]

        prefix = "FP" + uuid.uuid4().hex[:6].upper()
        count = int(rate * seconds / 100) + 1
        payloads = [
            request_bytes("POST", "/v1/observations", b)
            for b in bodies(prefix, 100, count, series=SERIES)
        ]
        ingest = asyncio.ensure_future(
            open_loop(port, lambda i: payloads[i % len(payloads)], rate / 100, seconds)
        )
        phase = await measure("ingest", pids, ingest, seconds)
        result = ingest.result()
        phase.requests, phase.errors = sum(result.statuses.values()), result.errors
        phase.ok = result.statuses[202]
        phases.append(phase)

        reads = [
            request_bytes("GET", f"/v1/reference-data/{prefix}-{i:04d}/official-values/{SNAP}")
            for i in range(SERIES)
        ]
        read = asyncio.ensure_future(closed_loop(port, reads, 8, seconds))
        phase = await measure("read", pids, read, seconds)
        result = read.result()
        phase.requests, phase.errors = sum(result.statuses.values()), result.errors
        phase.ok = result.statuses[200]
        phases.append(phase)
        return phases
    finally:
        for process in processes.values():
            process.stop()


def report(phases: list[Phase], args: argparse.Namespace) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        f"# Process footprint, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `.venv/bin/python -m benchmarks.e2e.footprint --seconds {args.seconds:g}"
        f" --rate {args.rate:g}{' --stack-running' if args.stack_running else ''}`",
        f"- commit: {commit}; machine: {platform.machine()}, {os.cpu_count()} CPUs,"
        f" {platform.platform()}; the local stack (PostgreSQL, Kafka, Redis) on the same"
        " machine, shared with other work",
        "- telemetry on (traces sampled at the seed's rates to a file, EMF metrics to a file)",
        "",
        "| phase | seconds | requests | 2xx | errors | process | peak RSS MiB | CPU cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for phase in phases:
        for process in phase.peak_mib:
            lines.append(
                f"| {phase.name} | {phase.seconds:.0f} | {phase.requests} | {phase.ok} "
                f"| {phase.errors} "
                f"| {process} | {phase.peak_mib[process]:.0f} | {phase.cpu_cores[process]:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=2000, help="observations per second")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument(
        "--stack-running",
        action="store_true",
        help="use the stack already listening on the configured ports (no stack.sh up)",
    )
    args = parser.parse_args()
    if not args.stack_running:
        prepare_stack()
    prefix = "FOOTPRINT" + uuid.uuid4().hex[:6].upper()
    dsn = asyncio.run(own_database("qis_footprint", fresh=True))
    isolation = {**own_topic_and_group(prefix), **database_settings(dsn)}
    create_topics(isolation)
    phases = asyncio.run(run(args.seconds, args.rate, isolation))
    text = report(phases, args)
    print(json.dumps([vars(p) for p in phases], indent=1))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
