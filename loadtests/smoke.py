"""CI smoke load test: the whole service on the local stack, 60 s of headless Locust, SLO gate.

    .venv/bin/python -m loadtests.smoke [--seconds 60] [--users 40] [--out .local/loadtests/smoke]

1. the local stack up, migrations, topics (`benchmarks.e2e.processes.prepare_stack`);
2. `qis api` on a free loopback port, `qis worker`, `qis scheduler` (EMF metrics of the
   run go to `<out>/metrics.emf.jsonl`, so alarms can be replayed against them);
3. `locust --headless` with the seed step, `-t` seconds of load, CSV + HTML reports and
   the SLO gate (its table is printed at the end);
4. the API process' CPU time per request, from /proc (context for the sizing model);
5. every process stopped, whatever happened; the exit code is Locust's, i.e. the gate's.

Every step is bounded in time; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.e2e.processes import (
    REPO,
    VENV_BIN,
    Process,
    auth_settings,
    bench_token,
    env,
    free_port,
    prepare_stack,
)

READY_SECONDS = 60.0


def _wait_ready(port: int, api: Process) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if api.popen.poll() is not None:
            raise RuntimeError(f"qis api exited ({api.popen.returncode}); see {api.log}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/health/ready", timeout=2
            ) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"qis api not ready in {READY_SECONDS:.0f} s; see {api.log}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _requests_in(csv_path: Path) -> int:
    import csv

    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                return int(row["Request Count"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.smoke", description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="load duration after seeding")
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--spawn-rate", type=float, default=20.0)
    parser.add_argument("--user-rps", type=float, default=2.0)
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / ".local" / "loadtests" / "smoke")
    parser.add_argument("--no-stack", action="store_true", help="the stack is already prepared")
    parser.add_argument(
        "locust_args", nargs="*", help="extra Locust arguments after --, e.g. -- --shape spike"
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.emf.jsonl").unlink(missing_ok=True)  # this run's metrics only
    if not args.no_stack:
        prepare_stack()
    port = free_port()
    telemetry = {
        "QIS_TELEMETRY__METRICS_EXPORTER": "file",
        "QIS_TELEMETRY__METRICS_FILE": str(out / "metrics.emf.jsonl"),
        "QIS_TELEMETRY__METRICS_INTERVAL_SECONDS": "10",
    }
    processes: list[Process] = []
    try:
        api = Process(
            f"smoke-api-{port}",
            [str(VENV_BIN / "qis"), "api"],
            # Authenticated, as in staging: the users send a token (LOADTEST_AUTH_TOKEN).
            env(QIS_API__PORT=str(port), **telemetry, **auth_settings(True)),
        )
        processes.append(api)
        processes.append(
            Process("smoke-worker", [str(VENV_BIN / "qis"), "worker"], env(**telemetry))
        )
        processes.append(
            Process("smoke-scheduler", [str(VENV_BIN / "qis"), "scheduler"], env(**telemetry))
        )
        _wait_ready(port, api)
        for process in processes[1:]:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited; see {process.log}")
        prefix = out / "smoke"
        command = [
            str(VENV_BIN / "locust"),
            "-f",
            str(REPO / "loadtests" / "locustfile.py"),
            "--headless",
            "--only-summary",
            "--host",
            f"http://127.0.0.1:{port}",
            "-u",
            str(args.users),
            "-r",
            str(args.spawn_rate),
            "-t",
            f"{args.seconds}s",
            "--user-rps",
            str(args.user_rps),
            "--series",
            str(args.series),
            "--csv",
            str(prefix),
            "--html",
            str(out / "smoke.html"),
            "--slo-report",
            str(out / "slo.json"),
            *args.locust_args,
        ]
        print("smoke:", " ".join(command), flush=True)
        cpu_before = cpu_seconds(api.popen.pid)
        locust_env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
        # Every scope, as a staging load-test client has: the seed step configures the
        # series (qis/admin) before the users ingest and read.
        locust_env.setdefault(
            "LOADTEST_AUTH_TOKEN", bench_token("qis/ingest", "qis/read", "qis/admin")
        )
        done = subprocess.run(command, env=locust_env, cwd=REPO, timeout=args.seconds + 300)
        api_cpu = cpu_seconds(api.popen.pid) - cpu_before
        requests = _requests_in(Path(f"{prefix}_stats.csv"))
        if requests:
            print(
                f"smoke: api process CPU {api_cpu:.1f} s for {requests} requests "
                f"(seeding included): {1000 * api_cpu / requests:.2f} ms CPU per request"
            )
        print(f"smoke: reports in {out} (smoke_stats.csv, smoke.html, slo.json)")
        print(f"smoke: exit {done.returncode}")
        return done.returncode
    finally:
        for process in reversed(processes):
            process.stop()


if __name__ == "__main__":
    sys.exit(main())
