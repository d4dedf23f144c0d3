"""`qis dashboards ...` / `qis alarms ...` through argparse, as `qis` will run them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from alarms.definitions import ALARMS, MANAGED_SERVICE_ALARMS
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
        "    alarm: DeadLetters\n"
        "    input_series:\n"
        "      - metric: DeadLetterCount\n"
        "        dimensions: {Environment: local, Service: worker, Stage: decode}\n"
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
    row = next(line for line in out.splitlines() if line.startswith("qis-local-HighIngestion"))
    assert row.split()[:2] == ["qis-local-HighIngestionLatency", "ALARM"]
    assert run("alarms", "evaluate", "--metrics", str(slowed), "--fail-on-alarm") == 1
    capsys.readouterr()
    only = ("--alarm", "DeadLetters", "--fail-on-alarm")
    assert run("alarms", "evaluate", "--metrics", str(slowed), *only) == 0


def test_evaluate_json(slowed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("alarms", "evaluate", "--metrics", str(slowed), "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["alarms"]) == len(ALARMS) == 17
    skipped = {a["name"]: a["skipped"] for a in document["alarms"] if a["skipped"]}
    assert set(skipped) == {
        a.alarm_name.replace("${Environment}", "local") for a in MANAGED_SERVICE_ALARMS
    }
    assert skipped["qis-local-AuroraReplicaLag"] == (
        "skipped: reads AWS/RDS, which the recording does not hold (it holds Custom/QIS)"
    )
    # The recording set nothing aside and no sink failed: DeadLetterCount and SinkFailures
    # are the metrics not in it at all.
    warned = {a["name"]: a["warnings"] for a in document["alarms"] if a["warnings"]}
    assert list(warned) == ["qis-local-DeadLetters", "qis-local-SinkFailing"]
    assert warned["qis-local-DeadLetters"] == [
        "DeadLetterCount{Environment=local,Service=scheduler,Stage=audit-relay} (and 6 more "
        "series) not recorded, and no other Custom/QIS DeadLetterCount series either: "
        "every period is 'no datapoint'"
    ]
    assert warned["qis-local-SinkFailing"] == [
        "SinkFailures{Environment=local,Service=scheduler,Sink=eventbridge} (and 1 more "
        "series) not recorded, and no other Custom/QIS SinkFailures series either: "
        "every period is 'no datapoint'"
    ]


def test_evaluate_says_which_alarms_it_skips_and_warns_about_missing_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A recording made without the Route dimension: IngestionLatency is there, but not the
    # series the alarm reads, so every period would silently be "no datapoint".
    line = {
        "_aws": {
            "Timestamp": 1_764_201_600_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Custom/QIS",
                    "Metrics": [{"Name": "IngestionLatency", "Unit": "Milliseconds"}],
                    "Dimensions": [["Environment", "Service"]],
                }
            ],
        },
        "IngestionLatency": 12.0,
        "Environment": "staging",
        "Service": "api",
    }
    path = tmp_path / "no-route.emf.jsonl"
    path.write_text(json.dumps(line) + "\n")
    assert run("alarms", "evaluate", "--metrics", str(path)) == 0
    out = capsys.readouterr().out
    # The environment is the recording's: staging.
    assert (
        "  ! IngestionLatency{Environment=staging,Route=POST /v1/observations,Service=api} "
        "not recorded; near matches: IngestionLatency{Environment=staging,Service=api}"
    ) in out
    assert (
        "  ! DataIngestionRate{Environment=staging,Service=api} not recorded, and no other "
        "Custom/QIS DataIngestionRate series either: every period is 'no datapoint'"
    ) in out
    row = next(line for line in out.splitlines() if line.startswith("qis-staging-KafkaDisk"))
    assert row.split() == ["qis-staging-KafkaDiskUsedHigh", "skipped", "-"]
    assert "  skipped: reads AWS/Kafka, which the recording does not hold" in out
    # Asked for another environment, the recording's series are near matches only.
    assert run("alarms", "evaluate", "--metrics", str(path), "--environment", "prod") == 0
    out = capsys.readouterr().out
    assert "qis-prod-HighIngestionLatency" in out
    assert "near matches: IngestionLatency{Environment=staging,Service=api}" in out


def test_a_recording_of_two_environments_needs_one_chosen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = []
    for environment in ("staging", "prod"):
        lines.append(
            json.dumps(
                {
                    "_aws": {
                        "Timestamp": 1_764_201_600_000,
                        "CloudWatchMetrics": [
                            {
                                "Namespace": "Custom/QIS",
                                "Metrics": [{"Name": "DataIngestionRate", "Unit": "Count"}],
                                "Dimensions": [["Environment", "Service"]],
                            }
                        ],
                    },
                    "DataIngestionRate": 3,
                    "Environment": environment,
                    "Service": "api",
                }
            )
        )
    path = tmp_path / "both.emf.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert run("alarms", "evaluate", "--metrics", str(path)) == 2
    assert "environments prod, staging: choose one with --environment" in capsys.readouterr().err
    assert run("alarms", "evaluate", "--metrics", str(path), "--environment", "prod") == 0
    out = capsys.readouterr().out
    assert "qis-prod-NoIngestion" in out
    assert "! DataIngestionRate" not in out  # recorded: no warning


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
