"""The SLO gate on fabricated Locust statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.slo import (
    EndpointStats,
    SloConfig,
    evaluate,
    exit_code,
    format_endpoints,
    format_results,
    from_csv,
    main,
)


def row(
    method: str, name: str, p95: float, p99: float, requests: int = 1000, failures: int = 0
) -> EndpointStats:
    return EndpointStats(method, name, requests, failures, 50.0, p95 / 3, p95, p99)


GOOD = [
    row("POST", "/v1/observations [single]", p95=40, p99=90),
    row("POST", "/v1/observations [batch]", p95=120, p99=180),
    row("GET", "/v1/reference-data/{id}/official-values/{snap} [latest]", p95=8, p99=25),
    row("GET", "/v1/reference-data/{id}/quality [window]", p95=30, p99=60),
]


def verdicts(
    rows: list[EndpointStats], config: SloConfig | None = None, errors: int = 0
) -> dict[tuple[str, str], bool]:
    return {(r.slo, r.scope): r.passed for r in evaluate(rows, config or SloConfig(), errors)}


def test_a_run_within_every_slo_passes_with_exit_code_0() -> None:
    results = evaluate(GOOD, SloConfig())

    assert all(r.passed for r in results)
    assert exit_code(results) == 0
    # every endpoint is checked against the SLO of its kind
    assert [r.scope for r in results if r.slo == "ingestion P95"] == [
        "POST /v1/observations [single]",
        "POST /v1/observations [batch]",
    ]
    assert len([r for r in results if r.slo == "read P99"]) == 2


def test_a_slow_ingestion_endpoint_fails_the_gate() -> None:
    rows = [*GOOD[:1], row("POST", "/v1/observations [batch]", p95=230, p99=400), *GOOD[2:]]

    results = evaluate(rows, SloConfig())

    assert verdicts(rows)[("ingestion P95", "POST /v1/observations [batch]")] is False
    assert exit_code(results) == 1
    table = format_results(results)
    assert "230 ms" in table
    assert "FAIL" in table
    assert table.endswith("SLO gate: FAILED")


def test_read_p99_uses_the_configured_bound() -> None:
    name = "GET /v1/reference-data/{id}/quality [window]"
    assert verdicts(GOOD, SloConfig(read_p99_ms=100))[("read P99", name)] is True
    assert verdicts(GOOD, SloConfig(read_p99_ms=50))[("read P99", name)] is False


def test_the_failure_ratio_is_over_all_requests() -> None:
    rows = [
        *GOOD[:3],
        row("GET", "/v1/reference-data/{id}/quality [window]", 30, 60, requests=1000, failures=39),
    ]  # 39 / 4000 < 1 %
    assert exit_code(evaluate(rows, SloConfig())) == 0

    rows[-1] = row("GET", "/v1/reference-data/{id}/quality [window]", 30, 60, failures=41)
    results = evaluate(rows, SloConfig())

    (failure,) = [r for r in results if r.slo == "failure ratio"]
    assert failure.measured == pytest.approx(41 / 4000)
    assert not failure.passed
    assert exit_code(results) == 1


def test_exceptions_in_test_code_and_empty_runs_fail() -> None:
    assert exit_code(evaluate(GOOD, SloConfig(), test_errors=1)) == 1
    assert exit_code(evaluate([], SloConfig())) == 1


def test_a_category_without_requests_is_reported_not_measured() -> None:
    results = evaluate(GOOD[2:], SloConfig())

    (ingestion,) = [r for r in results if r.slo == "ingestion P95"]
    assert ingestion.measured is None
    assert ingestion.note == "not measured"
    assert exit_code(results) == 0


def test_the_endpoint_table_has_percentiles_rates_and_failures() -> None:
    table = format_endpoints(GOOD)

    assert table.splitlines()[0].split() == [
        "endpoint",
        "reqs",
        "fails",
        "req/s",
        "P50",
        "P95",
        "P99",
    ]
    assert "POST /v1/observations [batch]" in table
    assert "total" in table.splitlines()[-1]


CSV = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,\
80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,/v1/observations [single],500,0,12,14.1,3,250,120,16.6,0.0,12,14,16,18,30,45,80,210,250,\
250,250
GET,/v1/reference-data/{id}/quality [window],300,6,9,9.5,2,90,400,10.0,0.2,9,10,11,12,20,25,\
40,60,90,90,90
,Aggregated,800,6,11,12.0,2,250,230,26.6,0.2,11,12,14,15,25,40,70,200,250,250,250
"""


def test_a_finished_run_is_rechecked_from_locust_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "run_stats.csv").write_text(CSV)

    rows = from_csv(tmp_path / "run_stats.csv")

    assert [(r.label, r.p95_ms, r.p99_ms, r.failures) for r in rows] == [
        ("POST /v1/observations [single]", 45.0, 210.0, 0),
        ("GET /v1/reference-data/{id}/quality [window]", 25.0, 60.0, 6),
    ]
    # 6 / 800 failures is under 1 %, every latency bound holds
    assert main([str(tmp_path / "run"), "--json", str(tmp_path / "slo.json")]) == 0
    assert (tmp_path / "slo.json").exists()
    assert main([str(tmp_path / "run"), "--max-failure-ratio", "0.005"]) == 1
    assert "SLO gate: FAILED" in capsys.readouterr().out


def test_an_endpoint_with_too_few_requests_is_shown_but_not_gated() -> None:
    rows = [*GOOD, row("GET", "/v1/reference-data/{id}/quality [rare]", 900, 950, requests=5)]

    results = evaluate(rows, SloConfig(min_requests=20))

    (rare,) = [r for r in results if r.scope.endswith("[rare]")]
    assert rare.passed
    assert rare.measured == 950
    assert rare.note == "only 5 requests: not gated"
    assert exit_code(results) == 0
    assert exit_code(evaluate(rows, SloConfig(min_requests=5))) == 1
