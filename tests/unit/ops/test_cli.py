"""`qis dashboards ...` / `qis alarms ...` through argparse, as `qis` will run them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from alarms.sample_metrics import synthetic_recording
from dashboards.cli import register


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="qis")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    settings = object()  # what `qis` passes; these commands need none
    result: int = args.run(settings, args)
    return result


@pytest.fixture(scope="module")
def slowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("emf") / "slow.emf.jsonl"
    lines = synthetic_recording("injected-latency", minutes=20, requests_per_minute=300)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_generate_check_passes_on_the_committed_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("dashboards", "generate", "--check") == 0
    assert run("alarms", "generate", "--check") == 0
    assert "stale" not in capsys.readouterr().out


def test_alarms_test_runs_every_vector(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("alarms", "test") == 0
    assert "0 failed" in capsys.readouterr().out


def test_alarms_test_fails_on_a_failing_vector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = tmp_path / "wrong.yaml"
    vectors.write_text(
        "tests:\n"
        "  - name: a dead letter does not alarm (wrong)\n"
        "    alarm: QIS-DeadLetters\n"
        "    input_series:\n"
        "      - metric: DeadLetterCount\n"
        "        dimensions: {Service: worker, Stage: decode}\n"
        '        values: "1"\n'
        "    expected: [{at: 0, state: OK}]\n"
    )
    assert run("alarms", "test", str(vectors)) == 1
    assert "FAIL wrong.yaml: a dead letter does not alarm (wrong)" in capsys.readouterr().out


def test_evaluate_reports_and_exits_0_unless_asked_to_fail(
    slowed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("alarms", "evaluate", "--metrics", str(slowed)) == 0
    out = capsys.readouterr().out
    assert "QIS-HighIngestionLatency      ALARM" in out
    assert run("alarms", "evaluate", "--metrics", str(slowed), "--fail-on-alarm") == 1
    capsys.readouterr()
    only = ("--alarm", "QIS-DeadLetters", "--fail-on-alarm")
    assert run("alarms", "evaluate", "--metrics", str(slowed), *only) == 0


def test_evaluate_json(slowed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("alarms", "evaluate", "--metrics", str(slowed), "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["alarms"]) == 8


def test_bad_input_is_a_message_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.jsonl"
    assert run("alarms", "evaluate", "--metrics", str(missing)) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert run("alarms", "evaluate", "--metrics", str(empty)) == 2
    assert "no EMF record" in capsys.readouterr().err
    assert run("alarms", "evaluate", "--metrics", str(empty), "--alarm", "QIS-Nope") == 2
