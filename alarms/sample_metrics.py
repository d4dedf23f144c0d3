"""Write a synthetic EMF recording in exactly the services' format, for demos and tests.

The lines come from the services' own instruments and exporter (`app.telemetry.metrics`:
`QisMetrics` feeding the EMF exporter, DELTA temporality, exponential histograms); only
the clock is simulated, so thirty minutes take a second or two.

    python -m alarms.sample_metrics --scenario healthy --out healthy.emf.jsonl
    python -m alarms.sample_metrics --scenario injected-latency --out slow.emf.jsonl
    python -m alarms.sample_metrics --scenario dead-letters --out dead-letters.emf.jsonl

Scenarios: `healthy` (ingestion p95 around 40 ms, everything nominal),
`injected-latency` (healthy, then from minute 10 a slowed broker adds ~250 ms to every
ingestion request) and `dead-letters` (healthy, plus the set-asides of `SET_ASIDE_BY_MINUTE`:
at minute 4 the worker dead-letters one record at `reconcile`; at minute 9 the scheduler
sets two snaps aside at `window` while the worker dead-letters one record at `decode`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from app.telemetry.catalogue import INGESTION_ROUTE, OBSERVATIONS_TOPIC
from app.telemetry.distributions import Distributions
from app.telemetry.metrics import QisMetrics, StdoutEmfExporter

SCENARIOS = ("healthy", "injected-latency", "dead-letters")
DEFAULT_START = datetime(2025, 11, 27, 9, 0, 17, tzinfo=UTC)
SERIES = ("EURUSD", "ETH-USD", "SPX", "SOFR")
INJECTION_MINUTE = 10
# The `dead-letters` scenario: minute -> (service, stage, count) set aside in that minute.
SET_ASIDE_BY_MINUTE: dict[int, tuple[tuple[str, str, int], ...]] = {
    4: (("worker", "reconcile", 1),),
    9: (("scheduler", "window", 2), ("worker", "decode", 1)),
}


class _Recording:
    """The lines all services exported, and the simulated clock that stamps them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.clock_ms = 0


class _Recorder(StdoutEmfExporter):
    """One service's exporter, writing into the shared recording."""

    def __init__(self, recording: _Recording, distributions: Distributions) -> None:
        super().__init__(distributions=distributions)
        self._recording = recording

    def _export(self, log_event: dict[str, Any]) -> None:
        record = json.loads(log_event["message"])
        record["_aws"]["Timestamp"] = self._recording.clock_ms
        self._recording.lines.append(json.dumps(record))


class _Process:
    """One service process: a meter provider with a manually collected reader."""

    def __init__(self, service: str, recording: _Recording) -> None:
        distributions = Distributions()
        self.reader = PeriodicExportingMetricReader(
            _Recorder(recording, distributions), export_interval_millis=math.inf
        )
        self.provider = MeterProvider(
            metric_readers=[self.reader],
            resource=Resource({"service.name": f"qis-{service}"}),
        )
        self.metrics = QisMetrics(
            self.provider.get_meter("qis"),
            service,
            quality_series=frozenset(SERIES),
            distributions=distributions,
        )

    def export(self) -> None:
        self.reader.collect()


def synthetic_recording(
    scenario: str,
    *,
    minutes: int = 30,
    requests_per_minute: int = 1200,
    start: datetime = DEFAULT_START,
    seed: int = 7,
) -> list[str]:
    """EMF lines of `minutes` one-minute export intervals of api, worker and scheduler."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    rng = random.Random(seed)
    recording = _Recording()
    processes = [_Process(service, recording) for service in ("api", "worker", "scheduler")]
    api, worker, scheduler = (p.metrics for p in processes)
    for minute in range(minutes):
        slowed = scenario == "injected-latency" and minute >= INJECTION_MINUTE
        for _ in range(int(requests_per_minute * rng.uniform(0.9, 1.1))):
            latency = rng.lognormvariate(math.log(18.0), 0.5)
            if slowed:
                latency += rng.lognormvariate(math.log(250.0), 0.25)
            roll = rng.random()
            status = 500 if roll < 0.0005 else 422 if roll < 0.0035 else 202
            if status == 202:
                api.ingestion_latency(INGESTION_ROUTE, latency)
                api.observations_accepted(rng.randint(1, 20))
            method, template = INGESTION_ROUTE.split(" ", 1)
            api.http_request(method, template, status, latency + rng.uniform(0.5, 3.0))
        for _ in range(300):
            l1_hit = rng.random() < 0.8
            api.cache_lookup("L1", l1_hit)
            if not l1_hit:
                api.cache_lookup("L2", rng.random() < 0.9)
        if rng.random() < 0.02:
            api.cache_fallback()
        for _ in range(150):
            worker.reconciliation(rng.random() >= 0.001)
        for series in SERIES:
            score = 1.0 if rng.random() < 0.9 else 0.667 if series == "ETH-USD" else 0.95
            worker.quality_score(score, series)
            on_time = rng.random() < 0.85
            scheduler.publication_freshness(
                rng.uniform(1.0, 10.0) if on_time else rng.uniform(60.0, 64.0)
            )
        worker.consumer_lag(OBSERVATIONS_TOPIC, max(0, round(rng.gauss(80 if slowed else 40, 15))))
        if scenario == "dead-letters":
            by_service = {"worker": worker, "scheduler": scheduler}
            for service, stage, count in SET_ASIDE_BY_MINUTE.get(minute, ()):
                by_service[service].dead_letters(count, stage)
        exported_at = start + timedelta(minutes=minute + 1)
        recording.clock_ms = int(exported_at.timestamp() * 1000)
        for process in processes:
            process.export()
    for process in processes:
        process.provider.shutdown()
    return recording.lines


def main(argv: Sequence[str] | None = None) -> int:
    """Write one scenario's EMF lines to `--out`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--requests-per-minute", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    lines = synthetic_recording(
        args.scenario,
        minutes=args.minutes,
        requests_per_minute=args.requests_per_minute,
        seed=args.seed,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    sys.stdout.write(f"wrote {len(lines)} EMF records to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
