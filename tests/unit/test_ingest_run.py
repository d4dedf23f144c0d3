"""`qis ingest` against a fake api (httpx.MockTransport): what it sends, counts and keeps.

The real api, worker and PostgreSQL: tests/e2e/test_ingest_file.py.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from qis_client import AsyncQisClient, RetryPolicy

from app.entrypoints import ingest
from app.entrypoints.ingest import EXIT_OK, EXIT_REJECTED, EXIT_STOPPED, Job, send
from app.entrypoints.ingest_files import rows
from app.settings import Settings

HEADER = "reference_data_id,source,snap,value,observed_at\n"


def row(n: int, source: str = "bbg") -> str:
    return f"T.A,{source},2026-01-15T14:{n // 60:02d}:{n % 60:02d}Z,{n},2026-01-15T14:00:00Z\n"


class FakeApi:
    """Answers like the api: 422 naming the items whose source is `api-bad`, a 400
    naming none for a body holding `no-index`, 503 for `unavailable`, else 202."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health/ready":
            return httpx.Response(200, json={"status": "ready", "checks": {}, "failing": []})
        items = json.loads(request.content)["observations"]
        self.requests.append(items)
        sources = [item["source"] for item in items]
        if "unavailable" in sources:
            return problem(503, "ingestion log unavailable", [])
        bad = [i for i, source in enumerate(sources) if source == "api-bad"]
        if bad:
            errors = [{"loc": ["observations", i, "source"], "msg": "refused"} for i in bad]
            return problem(422, f"{len(bad)} invalid observation(s)", errors)
        if "no-index" in sources and len(items) > 1:
            return problem(400, "something about the body", [])
        if "no-index" in sources:
            return problem(400, "this one", [])
        ids = [f"id{i}" for i in range(len(items))]
        return httpx.Response(
            202, json={"accepted": len(items), "duplicates": 0, "observation_ids": ids}
        )

    def sent_sources(self) -> list[str]:
        return [item["source"] for items in self.requests for item in items]


def problem(status: int, detail: str, errors: list[dict[str, Any]]) -> httpx.Response:
    body = {"type": "about:blank", "title": "x", "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


def client(api: FakeApi, batch: int = 5000) -> AsyncQisClient:
    return AsyncQisClient(
        "http://api.test",
        transport=httpx.MockTransport(api),
        max_batch=batch,
        retry=RetryPolicy(max_attempts=1),
    )


async def test_api_problems_are_mapped_back_to_lines_and_the_rest_resent(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(HEADER + row(1) + row(2, "api-bad") + row(3) + row(4, "api-bad"))
    api = FakeApi()
    async with client(api) as qis:
        outcome = await send(qis, list(rows(path, "csv")), resent_through=0)
    assert (outcome.accepted, outcome.duplicates) == (2, 0)
    assert [(line, why) for line, why, _ in outcome.rejects] == [
        (3, "api: source: refused"),
        (5, "api: source: refused"),
    ]
    assert outcome.rejects[0][2] == row(2, "api-bad").strip()
    # the first request had all four, the second only the good ones
    assert [len(items) for items in api.requests] == [4, 2]


async def test_a_problem_naming_no_row_splits_until_the_row_is_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "".join(row(n) for n in range(7)) + row(7, "no-index"))
    api = FakeApi()
    async with client(api) as qis:
        outcome = await send(qis, list(rows(path, "csv")), resent_through=0)
    assert outcome.accepted == 7
    assert [(line, why) for line, why, _ in outcome.rejects] == [(9, "api: 400 x: this one")]
    assert sorted(api.sent_sources()).count("bbg") >= 7
    assert len(api.requests) <= 2 * 8


async def test_rows_sent_by_an_interrupted_run_count_as_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "".join(row(n) for n in range(5)))
    async with client(FakeApi()) as qis:
        outcome = await send(qis, list(rows(path, "csv")), resent_through=4)
    assert (outcome.accepted, outcome.duplicates) == (2, 3)  # lines 2, 3, 4 were sent


def args(path: Path, **options: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ingest.register(parser.add_subparsers())
    argv = ["ingest", str(path), "--output", "json", "--concurrency", "2"]
    for name, value in options.items():
        flag = f"--{name.replace('_', '-')}"
        argv += [flag] if value is True else [flag, str(value)]
    return parser.parse_args(argv)


def run(
    path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str], **options: Any
) -> tuple[int, dict[str, Any]]:
    job = Job.from_args(Settings(), args(path, **options))
    job.stream = io.StringIO()
    job.client = lambda: client(api, job.batch_size)  # type: ignore[method-assign]
    code = asyncio.run(job.run())
    captured = capsys.readouterr()
    return code, json.loads(captured.out)


def test_a_run_counts_every_row_once_and_writes_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.csv"
    body = [row(n) for n in range(10)]
    body[3] = row(3, "api-bad")
    body[6] = "T.A,bbg,not a time,1,2026-01-15T14:00:00Z\n"
    path.write_text(HEADER + "".join(body))
    api = FakeApi()
    code, summary = run(path, api, capsys, batch_size=3)
    assert code == EXIT_REJECTED
    assert {k: summary[k] for k in ("rows", "accepted", "duplicates", "rejected")} == {
        "rows": 10,
        "accepted": 8,
        "duplicates": 0,
        "rejected": 2,
    }
    assert summary["complete"] is True
    rejects = [
        json.loads(line) for line in (tmp_path / "data.csv.rejects.jsonl").read_text().splitlines()
    ]
    assert [(r["line"], r["row"]) for r in rejects] == [
        (5, body[3].strip()),
        (8, body[6].strip()),
    ]
    assert rejects[0]["reason"] == "api: source: refused"
    assert rejects[1]["reason"].startswith("snap: ")
    checkpoint = json.loads((tmp_path / "data.csv.qis-ingest.checkpoint").read_text())
    assert (checkpoint["line"], checkpoint["complete"]) == (11, True)

    # Again: the checkpoint says it is done, nothing is sent.
    before = len(api.requests)
    code, again = run(path, api, capsys)
    assert (code, again["accepted"], again["run_rows"]) == (EXIT_REJECTED, 8, 0)
    assert len(api.requests) == before


def test_a_changed_file_refuses_its_old_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(HEADER + row(1))
    assert run(path, FakeApi(), capsys)[0] == EXIT_OK
    path.write_text(HEADER + row(2))
    os.utime(path, ns=(1, 1))
    job = Job.from_args(Settings(), args(path))
    with pytest.raises(ingest.UsageProblem, match="another version"):
        asyncio.run(job.run())
    code, summary = run(path, FakeApi(), capsys, restart=True)
    assert (code, summary["accepted"]) == (EXIT_OK, 1)
    assert not (tmp_path / "data.csv.rejects.jsonl").exists()


def test_an_answer_not_about_a_row_stops_with_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(HEADER + row(1) + row(2) + row(3, "unavailable") + row(4))
    api = FakeApi()
    code, summary = run(path, api, capsys, batch_size=2, concurrency=1)
    assert code == EXIT_STOPPED
    assert (summary["rows"], summary["accepted"], summary["last_line"]) == (2, 2, 3)
    checkpoint = json.loads((tmp_path / "data.csv.qis-ingest.checkpoint").read_text())
    assert (checkpoint["line"], checkpoint["sent_through"], checkpoint["complete"]) == (3, 5, False)


def test_a_token_command_prints_a_token_or_json_with_its_expiry() -> None:
    plain = ingest.command_token("echo abc.def")
    assert (plain.access_token, plain.expires_at) == ("abc.def", None)
    answer = ingest.command_token(
        """python3 -c 'print("{\\"access_token\\": \\"t1\\", \\"expires_in\\": 3600}")'"""
    )
    assert answer.access_token == "t1"
    assert answer.expires_at is not None
    assert 3500 < answer.expires_at - time.time() <= 3600
    with pytest.raises(ingest.Stopped, match="exited 3"):
        ingest.command_token("sh -c 'echo no >&2; exit 3'")
    with pytest.raises(ingest.Stopped, match="printed nothing"):
        ingest.command_token("true")


def test_the_token_goes_out_as_a_bearer_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(HEADER + row(1))
    seen: list[str | None] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return FakeApi()(request)

    job = Job.from_args(Settings(), args(path, token_command="echo s3cret"))
    job.stream = io.StringIO()
    job.transport = httpx.MockTransport(api)
    assert asyncio.run(job.run()) == EXIT_OK
    assert seen == ["Bearer s3cret", "Bearer s3cret"]  # readiness, then the post
    assert json.loads(capsys.readouterr().out)["accepted"] == 1
