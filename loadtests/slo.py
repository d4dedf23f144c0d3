"""SLO gates at the end of a load run: measured values, limits, pass/fail, exit code.

Pure: it takes per-endpoint statistics (from Locust's in-memory stats at the end of a
run, or from the `*_stats.csv` Locust writes) and returns one result per SLO.

| SLO                  | applies to                                  | default limit |
|----------------------|---------------------------------------------|---------------|
| ingestion P95        | each `POST .../observations` endpoint        | < 200 ms      |
| read P99             | each `GET` endpoint                          | < 500 ms      |
| failure ratio        | all requests together                        | < 1 %         |
| load-test errors     | exceptions raised in the test's own code     | 0             |

A category with no requests is reported as not measured, and an endpoint with fewer than
`min_requests` (20) requests is shown but not gated (its P99 would be its maximum);
neither fails the gate. A run with no requests at all fails it. Offline re-check of a finished run:

    python -m loadtests.slo results/smoke        # reads results/smoke_stats.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["ingestion", "read", "other"]


@dataclass(frozen=True)
class EndpointStats:
    """One Locust stats row (one request name and method)."""

    method: str
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def kind(self) -> Kind:
        if self.method == "POST" and "/observations" in self.name:
            return "ingestion"
        if self.method == "GET":
            return "read"
        return "other"

    @property
    def label(self) -> str:
        return f"{self.method} {self.name}"


@dataclass(frozen=True)
class SloConfig:
    ingestion_p95_ms: float = 200.0
    read_p99_ms: float = 500.0
    max_failure_ratio: float = 0.01
    # A P95/P99 over a handful of requests is their maximum: such rows are shown, not gated.
    min_requests: int = 20


@dataclass(frozen=True)
class SloResult:
    slo: str
    scope: str
    measured: float | None
    limit: float
    unit: str
    passed: bool
    note: str = ""


def evaluate(
    rows: Sequence[EndpointStats], config: SloConfig, test_errors: int = 0
) -> list[SloResult]:
    """One result per (SLO, endpoint) plus the global ones."""
    results: list[SloResult] = []
    for kind, slo, attr, limit in (
        ("ingestion", "ingestion P95", "p95_ms", config.ingestion_p95_ms),
        ("read", "read P99", "p99_ms", config.read_p99_ms),
    ):
        measured_rows = [r for r in rows if r.kind == kind and r.requests > 0]
        if not measured_rows:
            results.append(
                SloResult(slo, f"no {kind} requests", None, limit, "ms", True, "not measured")
            )
        for row in measured_rows:
            value = float(getattr(row, attr))
            if row.requests < config.min_requests:
                note = f"only {row.requests} requests: not gated"
                results.append(SloResult(slo, row.label, value, limit, "ms", True, note))
            else:
                results.append(SloResult(slo, row.label, value, limit, "ms", value < limit))
    requests = sum(r.requests for r in rows)
    failures = sum(r.failures for r in rows)
    if requests == 0:
        results.append(
            SloResult(
                "failure ratio",
                "all requests",
                None,
                config.max_failure_ratio,
                "ratio",
                False,
                "no requests at all",
            )
        )
    else:
        ratio = failures / requests
        results.append(
            SloResult(
                "failure ratio",
                f"all requests ({failures}/{requests})",
                ratio,
                config.max_failure_ratio,
                "ratio",
                ratio < config.max_failure_ratio,
            )
        )
    results.append(
        SloResult(
            "load-test errors", "exceptions in test code", test_errors, 0, "count", test_errors == 0
        )
    )
    return results


def passed(results: Iterable[SloResult]) -> bool:
    return all(r.passed for r in results)


def exit_code(results: Iterable[SloResult]) -> int:
    """0 when every SLO holds, 1 otherwise."""
    return 0 if passed(results) else 1


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:g}"


def _limit(result: SloResult) -> str:
    if result.unit == "count":
        return f"= {result.limit:g}"
    return f"< {_value(result.limit, result.unit)}"


def format_endpoints(rows: Sequence[EndpointStats]) -> str:
    """The run table: per endpoint P50/P95/P99, req/s, failures; then the total."""
    head = f"{'endpoint':58} {'reqs':>7} {'fails':>6} {'req/s':>7} {'P50':>6} {'P95':>6} {'P99':>6}"
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: (r.kind, r.label)):
        lines.append(
            f"{r.label:58} {r.requests:>7} {r.failures:>6} {r.rps:>7.1f} {r.p50_ms:>6.0f}"
            f" {r.p95_ms:>6.0f} {r.p99_ms:>6.0f}"
        )
    lines.append("-" * len(head))
    total_requests = sum(r.requests for r in rows)
    lines.append(
        f"{'total':58} {total_requests:>7} {sum(r.failures for r in rows):>6}"
        f" {sum(r.rps for r in rows):>7.1f}   (latencies in ms)"
    )
    return "\n".join(lines)


def format_results(results: Sequence[SloResult]) -> str:
    """The gate table: each SLO, its scope, the measured value, the limit, PASS/FAIL."""
    head = f"{'SLO':18} {'scope':58} {'measured':>10} {'limit':>10}  result"
    lines = [head, "-" * len(head)]
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        if r.note:
            verdict += f" ({r.note})"
        lines.append(
            f"{r.slo:18} {r.scope:58} {_value(r.measured, r.unit):>10} {_limit(r):>10}  {verdict}"
        )
    lines.append("-" * len(head))
    lines.append(f"SLO gate: {'PASSED' if passed(results) else 'FAILED'}")
    return "\n".join(lines)


def report_json(rows: Sequence[EndpointStats], results: Sequence[SloResult]) -> dict[str, Any]:
    return {
        "passed": passed(results),
        "slos": [asdict(r) for r in results],
        "endpoints": [{**asdict(r), "kind": r.kind} for r in rows],
    }


# -- sources of stats -------------------------------------------------------------------


def from_locust(stats: Any) -> list[EndpointStats]:
    """Rows from a `locust.stats.RequestStats` (at the end of a run)."""
    rows = []
    for entry in stats.entries.values():
        rows.append(
            EndpointStats(
                method=entry.method or "",
                name=entry.name,
                requests=entry.num_requests,
                failures=entry.num_failures,
                rps=entry.total_rps,
                p50_ms=float(entry.get_response_time_percentile(0.50) or 0),
                p95_ms=float(entry.get_response_time_percentile(0.95) or 0),
                p99_ms=float(entry.get_response_time_percentile(0.99) or 0),
            )
        )
    return rows


def _number(text: str) -> float:
    return 0.0 if text in ("", "N/A") else float(text)


def from_csv(path: Path) -> list[EndpointStats]:
    """Rows from Locust's `<prefix>_stats.csv` (the Aggregated row is left out)."""
    rows = []
    with path.open(newline="") as f:
        for rec in csv.DictReader(f):
            if rec["Name"] == "Aggregated":
                continue
            rows.append(
                EndpointStats(
                    method=rec["Type"],
                    name=rec["Name"],
                    requests=int(rec["Request Count"]),
                    failures=int(rec["Failure Count"]),
                    rps=_number(rec["Requests/s"]),
                    p50_ms=_number(rec["50%"]),
                    p95_ms=_number(rec["95%"]),
                    p99_ms=_number(rec["99%"]),
                )
            )
    return rows


def _exceptions_in_csv(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open(newline="") as f:
        return sum(int(rec.get("Count") or 0) for rec in csv.DictReader(f))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.slo", description=__doc__)
    parser.add_argument("csv_prefix", help="the --csv prefix of a finished Locust run")
    parser.add_argument("--ingestion-p95-ms", type=float, default=SloConfig.ingestion_p95_ms)
    parser.add_argument("--read-p99-ms", type=float, default=SloConfig.read_p99_ms)
    parser.add_argument("--max-failure-ratio", type=float, default=SloConfig.max_failure_ratio)
    parser.add_argument("--min-requests", type=int, default=SloConfig.min_requests)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    rows = from_csv(Path(f"{args.csv_prefix}_stats.csv"))
    errors = _exceptions_in_csv(Path(f"{args.csv_prefix}_exceptions.csv"))
    config = SloConfig(
        args.ingestion_p95_ms, args.read_p99_ms, args.max_failure_ratio, args.min_requests
    )
    results = evaluate(rows, config, errors)
    print(format_endpoints(rows))
    print()
    print(format_results(results))
    if args.json:
        args.json.write_text(json.dumps(report_json(rows, results), indent=1))
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
