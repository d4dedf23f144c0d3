"""`qis ingest` of a large CSV against the local stack, beside the ingestion benchmark.

    .venv/bin/python -m benchmarks.e2e.ingest_file [--rows 1000000] [--concurrency 4]

Writes a CSV of `--rows` distinct observations (1,000 series x 5 sources, a snap a
minute) under .local/bench/, starts the api on a free port with a database, topic and
consumer group of its own (no worker: the api's acceptance rate, as the ingestion
benchmark's "api alone"), runs `qis ingest FILE` as a user would (a subprocess, JSON
progress lines on stderr) and checks its summary (every row accepted, none rejected).
Just before and just after, against the same api, the ingestion benchmark's batch-100
scenario (100-observation requests, closed loop, 8 connections; benchmarks/e2e/
ingestion.py) for `--baseline-seconds` each, so the rates are measured side by side;
the ratio is to the mean of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.e2e.ingestion import bodies
from benchmarks.e2e.processes import (
    REPO,
    VENV_BIN,
    create_topics,
    database_settings,
    env,
    free_port,
    own_database,
    own_topic_and_group,
    prepare_stack,
    start_api,
    telemetry_settings,
)
from benchmarks.loadgen import closed_loop, request_bytes

OUT = REPO / ".local" / "bench"
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def write_csv(path: Path, rows: int, prefix: str) -> None:
    """`rows` distinct observations: series `prefix-0000..0999` x `src0..4`, a snap a minute."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("reference_data_id,source,snap,value,observed_at\n")
        for start in range(0, rows, 5000):
            snap = (BASE + timedelta(minutes=start // 5000)).isoformat().replace("+00:00", "Z")
            f.writelines(
                f"{prefix}-{n % 1000:04d},src{(n // 1000) % 5},{snap},"
                f"{100 + (n % 13) * 0.01:.2f},{snap}\n"
                for n in range(start, min(rows, start + 5000))
            )


def run_ingest(path: Path, url: str, concurrency: int) -> tuple[dict[str, float], float, int]:
    """`qis ingest` as a subprocess: its summary, wall seconds, and progress line count.
    Its peak resident memory is `max_rss_mib` of the summary."""
    log = OUT / "ingest-file-progress.jsonl"
    started = time.perf_counter()
    with log.open("w") as progress:
        done = subprocess.run(
            [
                str(VENV_BIN / "qis"),
                "ingest",
                str(path),
                "--url",
                url,
                "--restart",
                "--concurrency",
                str(concurrency),
                "--output",
                "json",
            ],
            env=env(),
            stdout=subprocess.PIPE,
            stderr=progress,
            text=True,
            check=False,
            timeout=3600,
        )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"qis ingest exited {done.returncode}; see {log}")
    lines = log.read_text().splitlines()
    summary = json.loads(done.stdout)
    # The largest of the waited-for children: `qis ingest` (the others are short commands).
    summary["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return summary, seconds, sum(1 for line in lines if '"running"' in line)


async def batch100(port: int, seconds: float, prefix: str) -> dict[str, float]:
    payloads = [request_bytes("POST", "/v1/observations", b) for b in bodies(prefix, 100, 400)]
    await closed_loop(port, payloads[:20], 8, 1.0)  # warm-up
    result = await closed_loop(port, payloads, 8, seconds)
    return result.summary(100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    args = parser.parse_args()
    prepare_stack()
    prefix = "FILE" + uuid.uuid4().hex[:6].upper()
    dsn = asyncio.run(own_database("qis_ingest_file", fresh=True))
    isolation = {
        **own_topic_and_group(prefix),
        **database_settings(dsn),
        **telemetry_settings(False, "ingest-file"),
    }
    create_topics(isolation)
    path = OUT / f"ingest-{args.rows}.csv"
    started = time.perf_counter()
    write_csv(path, args.rows, prefix)
    print(
        f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    port = free_port()
    api = start_api(port, **isolation)
    try:
        # batch-100 just before and just after: the machine's load drifts, the mean of
        # the two brackets what the api could take while qis ingest ran.
        before = asyncio.run(batch100(port, args.baseline_seconds, prefix + "B"))
        summary, seconds, progress_lines = run_ingest(
            path, f"http://127.0.0.1:{port}", args.concurrency
        )
        after = asyncio.run(batch100(port, args.baseline_seconds, prefix + "A"))
    finally:
        api.stop()
    baseline = (before["items_per_s"] + after["items_per_s"]) / 2
    counts = (summary["rows"], summary["accepted"], summary["duplicates"], summary["rejected"])
    assert counts == (args.rows, args.rows, 0, 0), summary
    rate = args.rows / seconds
    report = {
        "rows": args.rows,
        "concurrency": args.concurrency,
        "ingest_wall_seconds": round(seconds, 1),
        "ingest_rows_per_s_wall": round(rate),
        "ingest_rows_per_s_own_clock": summary["run_rows_per_second"],
        "progress_lines": progress_lines,
        "ingest_max_rss_mib": summary["max_rss_mib"],
        "batch100_before_obs_per_s": before["items_per_s"],
        "batch100_after_obs_per_s": after["items_per_s"],
        "batch100_p95_ms_before_after": [before["p95_ms"], after["p95_ms"]],
        "batch100_non_2xx": before["non_2xx"] + after["non_2xx"],
    }
    print(json.dumps(report, indent=1))
    print(
        f"qis ingest: {args.rows:,} rows in {seconds:.1f} s = {rate:,.0f} rows/s; "
        f"ingestion benchmark batch-100 (mean of before and after): {baseline:,.0f} obs/s; "
        f"ratio {rate / baseline:.2f}"
    )


if __name__ == "__main__":
    main()
