"""Where telemetry's cost on a read goes: one API process per configuration, wrk, µs/request.

    .venv/bin/python -m benchmarks.e2e.telemetry_breakdown [--route latest|bare] [--seconds 8]

Configurations, each a fresh `query_bench serve` process, alternated over `--rounds`
(the best round of each is kept: noise on a shared machine only slows a round down):

| name | what is on |
|---|---|
| off | nothing (`QIS_TELEMETRY__ENABLED=false`) |
| header-only | trace ids, the X-Amzn-Trace-Id header and log context; no sampling, no metrics |
| +metrics | the above plus HttpRequests/HttpLatency (EMF to a file every 10 s) |
| +sampling | the above plus the seed's sampling rates, spans to a JSON-lines file (= "on") |
| all-sampled | every request traced: the cost of one traced request |

The differences between neighbouring rows are the cost of each layer, in µs of the API's
time per request (wrk takes one core, the API the other, so the API is the bottleneck
and 1e6 / req_per_s is its time per request). `query_bench --telemetry both` measures
only off against on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys

from app.settings import load_settings
from benchmarks.e2e import query_bench
from benchmarks.e2e.processes import free_port, prepare_stack, telemetry_settings

_NO_SAMPLING = {
    f"QIS_TELEMETRY__SAMPLE_RATE_{route}": "0" for route in ("INGESTION", "QUERY", "DEFAULT")
}
_ALL_SAMPLED = {
    f"QIS_TELEMETRY__SAMPLE_RATE_{route}": "1" for route in ("INGESTION", "QUERY", "DEFAULT")
}


def configurations() -> dict[str, dict[str, str]]:
    on = telemetry_settings(True, "breakdown")
    return {
        "off": telemetry_settings(False, "breakdown"),
        "header-only": {**on, **_NO_SAMPLING, "QIS_TELEMETRY__METRICS_EXPORTER": "none"},
        "+metrics": {**on, **_NO_SAMPLING},
        "+sampling": on,
        "all-sampled": {**on, **_ALL_SAMPLED},
    }


def measure(route: str, seconds: int, connections: int, rounds: int) -> dict[str, list[float]]:
    """req/s per configuration and round."""
    results: dict[str, list[float]] = {name: [] for name in configurations()}
    script = ""
    if route == "latest":
        stack = load_settings(query_bench._db_env())
        asyncio.run(query_bench.seed(stack.db.writer_dsn))
        script = query_bench.zipf_script()
    for round_ in range(rounds):
        for name, settings in configurations().items():
            port = free_port()
            api = query_bench.start_api(port, settings)
            base = f"http://127.0.0.1:{port}"
            try:
                if route == "latest":
                    asyncio.run(query_bench.warm(base))
                url = base if route == "latest" else f"{base}/bench/bare"
                query_bench.wrk(url, 2, connections, script)  # warm-up
                run = query_bench.wrk(url, seconds, connections, script)
            finally:
                api.stop()
            results[name].append(run["req_per_s"])
            print(f"round {round_ + 1}/{rounds} {name:12} {run['req_per_s']:>9} req/s", flush=True)
    return results


def table(results: dict[str, list[float]]) -> str:
    lines = [f"{'configuration':14} {'req/s':>9} {'us/req':>7} {'layer':>7} {'vs off':>7}"]
    off = 1e6 / max(results["off"])
    previous = off
    for name, runs in results.items():
        us = 1e6 / max(runs)
        layer = "" if name == "off" else f"{us - previous:+.1f}"
        lines.append(
            f"{name:14} {max(runs):>9.0f} {us:>7.1f} {layer:>7} {100 * (1 - off / us):>6.1f}%"
        )
        if name != "all-sampled":
            previous = us
    lines.append("vs off: throughput lost against off; layer: µs added by that row's layer")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=["latest", "bare"], default="latest")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-stack", action="store_true", help="the stack is already up")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    if not args.no_stack:
        prepare_stack()
    results = measure(args.route, args.seconds, args.connections, args.rounds)
    print(json.dumps({"route": args.route, "req_per_s": results}))
    print(table(results))


if __name__ == "__main__":
    main()
