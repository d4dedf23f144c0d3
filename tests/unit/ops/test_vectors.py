"""Every promtool-like vector in alarms/tests/*.yaml, one pytest case per test entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarms.definitions import ALARMS, DEAD_LETTER_SOURCES, DeadLetterSource
from alarms.vectors import (
    Expectation,
    InputSeries,
    VectorCase,
    VectorError,
    expand_values,
    load_vectors,
    run_case,
    vector_alarms,
)

VECTOR_DIR = Path(__file__).resolve().parents[3] / "alarms" / "tests"
KNOWN = vector_alarms(ALARMS)
CASES = [
    pytest.param(case, id=f"{path.stem}: {case.name}")
    for path in sorted(VECTOR_DIR.glob("*.yaml"))
    for case in load_vectors(path).tests
]


@pytest.mark.parametrize("case", CASES)
def test_vector(case: VectorCase) -> None:
    result = run_case(case, KNOWN)
    assert not result.failures, "\n".join(result.failures)


def test_the_documentation_tables_are_all_there() -> None:
    golden = load_vectors(VECTOR_DIR / "cloudwatch_missing_data_tables.yaml").tests
    # 6 + 5 rows x 4 treatments, "retain current state" rows checked from OK and from ALARM.
    assert len(golden) == (6 + 5) * 4 + 4
    assert {case.alarm["TreatMissingData"] for case in golden if isinstance(case.alarm, dict)} == {
        "missing",
        "ignore",
        "breaching",
        "notBreaching",
    }


def test_a_wrong_expectation_is_reported() -> None:
    case = VectorCase(
        name="deliberately wrong",
        alarm="DeadLetters",
        input_series=[
            InputSeries(
                metric="DeadLetterCount",
                dimensions={"Environment": "local", "Service": "worker", "Stage": "decode"},
                values="_ _ 3",
            )
        ],
        expected=[Expectation(at=2, state="OK", value=4.0)],
    )
    failures = run_case(case, KNOWN).failures
    assert failures == (
        "at 2: expected OK, got ALARM (1 of the last 1 datapoints breaching (need 1))",
        "at 2: expected value 4.0, got 3.0",
    )


@pytest.mark.parametrize("source", DEAD_LETTER_SOURCES, ids=lambda s: f"{s.service}-{s.stage}")
def test_one_set_aside_at_any_stage_fires_the_dead_letter_alarm(source: DeadLetterSource) -> None:
    case = VectorCase(
        name=f"{source.service} {source.stage}",
        alarm="DeadLetters",
        input_series=[
            InputSeries(
                metric="DeadLetterCount",
                dimensions={
                    "Environment": "local",
                    "Service": source.service,
                    "Stage": source.stage,
                },
                values="_ 1 _",
            )
        ],
        expected=[
            Expectation(at=0, state="OK", value=0.0),
            Expectation(at=1, state="ALARM", value=1.0),
            Expectation(at=2, state="OK", value=0.0),
        ],
    )
    assert run_case(case, KNOWN).failures == ()


def test_alarms_are_named_by_base_or_local_name_and_read_local_metrics() -> None:
    assert KNOWN["DeadLetters"].alarm_name == "qis-local-DeadLetters"
    assert all(name.isalnum() for name in KNOWN)
    case = VectorCase(
        name="full name",
        alarm="qis-local-NoIngestion",
        input_series=[
            InputSeries(
                metric="DataIngestionRate",
                dimensions={"Environment": "local", "Service": "api"},
                values="5",
            ),
            # The same metric of another environment is another series: not this alarm's.
            InputSeries(
                metric="DataIngestionRate",
                dimensions={"Environment": "prod", "Service": "api"},
                values="_ 5",
            ),
        ],
        expected=[
            Expectation(at=0, state="OK", value=5.0),
            Expectation(at=1, state="OK", value=None),
        ],
    )
    result = run_case(case, KNOWN)
    assert result.failures == ()
    assert result.evaluations[1].value is None
    with pytest.raises(VectorError, match="unknown alarm qis-local-Nope"):
        run_case(VectorCase(name="x", alarm="qis-local-Nope", input_series=[], expected=[]), KNOWN)


def test_values_notation() -> None:
    assert expand_values("1 _ 2x3 _x2") == [1.0, None, 2.0, 2.0, 2.0, None, None]


def test_unknown_fields_fail_loudly(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "tests:\n  - name: x\n    alarm: DeadLetters\n    input_series: []\n"
        "    expected: []\n    expect: []\n"
    )
    with pytest.raises(VectorError, match="expect"):
        load_vectors(path)
