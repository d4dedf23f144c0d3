"""Every ingestion validation rule on its own, and the problem+json shape."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from app.api.problems import ApiProblem, Problem
from app.api.routes.observations import decode_submission

GOOD: dict[str, Any] = {
    "reference_data_id": "ETH-USD",
    "source": "kraken",
    "snap": "2026-01-15T14:00:00Z",
    "value": 3301.25,
    "observed_at": "2026-01-15T14:00:00.120Z",
}


def body(*items: dict[str, Any], **top: Any) -> bytes:
    return msgspec.json.encode({"observations": list(items), **top})


def with_(**changes: Any) -> dict[str, Any]:
    item = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            item.pop(key)
        else:
            item[key] = value
    return item


def problem_of(raw: bytes) -> Problem:
    with pytest.raises(ApiProblem) as caught:
        decode_submission(raw)
    return caught.value.problem


def test_a_valid_item_decodes_to_aware_datetimes() -> None:
    submission = decode_submission(body(GOOD))
    item = submission.observations[0]
    assert item.reference_data_id == "ETH-USD"
    assert item.value == 3301.25
    assert item.snap.utcoffset() is not None
    assert item.observation_id is None


@pytest.mark.parametrize(
    ("change", "loc", "fragment"),
    [
        ({"reference_data_id": "eth-usd"}, ["observations", 0, "reference_data_id"], "match"),
        ({"reference_data_id": "A" * 65}, ["observations", 0, "reference_data_id"], "match"),
        ({"reference_data_id": ""}, ["observations", 0, "reference_data_id"], "match"),
        ({"source": ""}, ["observations", 0, "source"], "length"),
        ({"source": "s" * 65}, ["observations", 0, "source"], "length"),
        ({"value": "1.0"}, ["observations", 0, "value"], "Expected `float`"),
        ({"snap": "2026-01-15T14:00:00"}, ["observations", 0, "snap"], "timezone"),
        ({"observed_at": "2026-01-15T14:00:00"}, ["observations", 0, "observed_at"], "timezone"),
        ({"snap": "yesterday"}, ["observations", 0, "snap"], "datetime"),
        ({"observation_id": ""}, ["observations", 0, "observation_id"], "length"),
        ({"observation_id": "x" * 129}, ["observations", 0, "observation_id"], "length"),
        ({"value": ...}, ["observations", 0], "missing required field `value`"),
        ({"colour": "red"}, ["observations", 0, "colour"], "unknown field"),
        ({"attributes": {"k": [1]}}, ["observations", 0, "attributes"], "Expected"),
        (
            {"attributes": {f"k{i}": i for i in range(33)}},
            ["observations", 0, "attributes"],
            "length",
        ),
        ({"attributes": {"k" * 65: 1}}, ["observations", 0, "attributes"], "length"),
        ({"attributes": {"k": "v" * 257}}, ["observations", 0, "attributes"], "length"),
    ],
)
def test_each_rule_rejects_with_its_location(
    change: dict[str, Any], loc: list[str | int], fragment: str
) -> None:
    problem = problem_of(body(with_(**change)))
    assert problem.status == 422
    assert isinstance(problem.errors, list)
    assert len(problem.errors) == 1
    assert problem.errors[0].loc[: len(loc)] == loc
    assert fragment in problem.errors[0].msg


def test_infinite_values_are_rejected() -> None:
    raw = body(GOOD).replace(b"3301.25", b"1e999")
    problem = problem_of(raw)
    assert problem.status == 422
    assert isinstance(problem.errors, list)
    assert problem.errors[0].loc == ["observations", 0, "value"]


def test_nan_is_not_json() -> None:
    problem = problem_of(body(GOOD).replace(b"3301.25", b"NaN"))
    assert problem.status == 400


def test_every_bad_item_is_listed_by_index() -> None:
    items = [GOOD, with_(source=""), GOOD, with_(snap="2026-01-15T14:00:00"), with_(value=...)]
    problem = problem_of(body(*items))
    assert problem.status == 422
    assert isinstance(problem.errors, list)
    assert [e.loc[1] for e in problem.errors] == [1, 3, 4]
    assert "nothing was accepted" in problem.detail


@pytest.mark.parametrize("count", [0, 5001])
def test_batch_size_is_one_to_five_thousand(count: int) -> None:
    problem = problem_of(body(*([GOOD] * count)))
    assert problem.status == 422
    assert isinstance(problem.errors, list)
    assert problem.errors[0].loc == ["observations"]


def test_five_thousand_is_allowed() -> None:
    assert len(decode_submission(body(*([GOOD] * 5000))).observations) == 5000


@pytest.mark.parametrize("raw", [b"not json", b"[1,2]", b'{"observations": 3}', b"{}", b'"x"', b""])
def test_not_json_or_wrong_shape_is_400(raw: bytes) -> None:
    assert problem_of(raw).status == 400


def test_unknown_top_level_field_is_422() -> None:
    problem = problem_of(body(GOOD, extra=1))
    assert problem.status == 422
    assert isinstance(problem.errors, list)
    assert problem.errors[0].loc == ["extra"]


def test_problem_document_shape() -> None:
    problem = problem_of(body(with_(source="")))
    document = msgspec.json.decode(msgspec.json.encode(problem))
    assert set(document) == {"type", "title", "status", "detail", "errors"}
    assert document["type"] == "about:blank"
    assert document["title"] == "Unprocessable Content"
    assert document["errors"][0] == {
        "loc": ["observations", 0, "source"],
        "msg": "Expected `str` of length >= 1",
    }
