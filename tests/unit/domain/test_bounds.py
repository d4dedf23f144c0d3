"""The bounds of what the platform holds (app/domain/bounds.py), at and just past each edge."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from app.domain import bounds
from app.domain.bounds import (
    MAX_SHIFT,
    MAX_TIMESTAMP,
    MAX_UTC_OFFSET,
    MIN_TIMESTAMP,
    observation_problems,
    submission_problems,
    text_problem,
    timestamp_problem,
)
from app.domain.observation import Observation, SubmittedObservation
from app.domain.series import MAX_STALENESS_SECONDS, MAX_WINDOW_SECONDS

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
LAST = datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def stored(**changes: Any) -> Observation:
    fields: dict[str, Any] = {
        "observation_id": "h:0123",
        "reference_data_id": "ETH-USD",
        "source": "kraken",
        "snap": SNAP,
        "value": 3301.25,
        "observed_at": SNAP,
        "received_at": SNAP + timedelta(seconds=1),
        "attributes": {"bid": 3301.0, "venue": "spot", "live": True, "note": None},
    }
    fields.update(changes)
    return Observation(**fields)


def submitted(**changes: Any) -> SubmittedObservation:
    fields: dict[str, Any] = {
        "reference_data_id": "ETH-USD",
        "source": "kraken",
        "snap": SNAP,
        "value": 1.0,
        "observed_at": SNAP,
    }
    fields.update(changes)
    return SubmittedObservation(**fields)


@pytest.mark.parametrize(
    "ts",
    [
        MIN_TIMESTAMP,
        LAST,
        SNAP,
        datetime(1970, 1, 1, 15, 59, tzinfo=timezone(timedelta(hours=15, minutes=59))),
        datetime(2199, 12, 31, 8, 0, tzinfo=timezone(-timedelta(hours=15, minutes=59))),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-12))),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=14))),
    ],
)
def test_timestamps_at_the_edges_are_accepted(ts: datetime) -> None:
    assert timestamp_problem(ts) is None


@pytest.mark.parametrize(
    ("ts", "fragment"),
    [
        (MIN_TIMESTAMP - timedelta(microseconds=1), "1970-01-01T00:00:00Z inclusive"),
        (MAX_TIMESTAMP, "2200-01-01T00:00:00Z exclusive"),
        (datetime(1, 1, 1, tzinfo=UTC), "1970"),
        (datetime(9999, 12, 31, 23, 59, tzinfo=UTC), "1970"),
        # In range by its wall clock, one minute before 1970 in UTC.
        (datetime(1970, 1, 1, 0, 0, tzinfo=timezone(timedelta(minutes=1))), "1970"),
        (datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=16))), "+16:00"),
        (datetime(2026, 1, 1, tzinfo=timezone(-timedelta(hours=18))), "-18:00"),
        (datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=59))), "+23:59"),
        (datetime(2026, 1, 1), "UTC offset"),
    ],
)
def test_timestamps_just_outside_are_refused(ts: datetime, fragment: str) -> None:
    problem = timestamp_problem(ts)
    assert problem is not None
    assert fragment in problem


def test_year_one_with_a_positive_offset_is_refused_without_overflow() -> None:
    # astimezone(UTC) of this overflows; the check only compares.
    ts = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(OverflowError):
        ts.astimezone(UTC)
    assert timestamp_problem(ts) is not None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kraken", None),
        ("", None),
        ("Zürich ✓ 😀", None),
        ("a\x00", "NUL"),
        ("\x00", "NUL"),
        ("\ud800", "surrogate"),
        ("ok\udfffok", "surrogate"),
    ],
)
def test_text_without_nul_and_encodable_as_utf8(text: str, problem: str | None) -> None:
    found = text_problem(text)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_a_lone_surrogate_escape_never_decodes() -> None:
    # msgspec refuses it as malformed JSON; only Python-built strings can carry one.
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(b'"\\ud800"')
    assert msgspec.json.decode(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_every_configured_shift_keeps_an_accepted_snap_representable() -> None:
    assert timedelta(seconds=max(MAX_WINDOW_SECONDS, MAX_STALENESS_SECONDS)) <= MAX_SHIFT
    earliest = MIN_TIMESTAMP - MAX_SHIFT - MAX_UTC_OFFSET
    latest = MAX_TIMESTAMP + MAX_SHIFT + MAX_UTC_OFFSET
    assert earliest.year >= 1968
    assert latest.year <= 2201
    # 64-bit nanoseconds since the epoch (Arrow, pandas, Go) end in April 2262.
    nanos = (latest - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    assert nanos < 2**63


def test_a_stored_observation_in_bounds_has_no_problem() -> None:
    assert observation_problems(stored()) == []
    assert observation_problems(stored(attributes=None, snap=MIN_TIMESTAMP, observed_at=LAST)) == []


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"snap": datetime(5, 4, 5, 6, tzinfo=UTC)}, "snap must be from 1970"),
        ({"observed_at": datetime(1, 1, 1, tzinfo=UTC)}, "observed_at must be from 1970"),
        ({"observed_at": datetime(2026, 1, 15, 14)}, "observed_at must carry a UTC offset"),
        ({"received_at": MAX_TIMESTAMP}, "received_at must be from 1970"),
        ({"snap": "2026-01-15T14:00:00Z"}, "snap must be a timestamp"),
        ({"source": "a\x00"}, "source must not contain a NUL"),
        ({"source": ""}, "source must be 1 to 64"),
        ({"source": "s" * 65}, "source must be 1 to 64"),
        ({"source": "\ud800"}, "source must be valid Unicode"),
        ({"observation_id": "x\x00y"}, "observation_id must not contain a NUL"),
        ({"observation_id": 7}, "observation_id must be a string"),
        ({"reference_data_id": "eth-usd"}, "reference_data_id 'eth-usd' does not match"),
        ({"value": math.nan}, "value must be a finite number"),
        ({"value": math.inf}, "value must be a finite number"),
        ({"attributes": {"k\x00": 1.0}}, "attribute key must not contain a NUL"),
        ({"attributes": {"k": "v\x00"}}, "attribute 'k': must not contain a NUL"),
        ({"attributes": {"k": "v" * 257}}, "attribute 'k': must be 0 to 256"),
        ({"attributes": {"k": math.inf}}, "attribute 'k' must be finite"),
        ({"attributes": {"k": [1]}}, "attribute 'k' must be a string, number, boolean or null"),
        ({"attributes": {f"k{i}": i for i in range(33)}}, "at most 32 entries"),
        ({"attributes": [1]}, "attributes must be an object"),
    ],
)
def test_a_stored_observation_out_of_bounds_is_described(
    changes: dict[str, Any], fragment: str
) -> None:
    problems = observation_problems(stored(**changes))
    assert len(problems) == 1, problems
    assert fragment in problems[0]


def test_every_problem_of_a_stored_observation_is_listed() -> None:
    problems = observation_problems(
        stored(source="a\x00", snap=datetime(1, 1, 1, tzinfo=UTC), value=math.nan)
    )
    assert [p.split(" ")[0] for p in problems] == ["source", "snap", "value"]


def test_submission_problems_locate_each_bad_field() -> None:
    items = [
        submitted(),
        submitted(snap=datetime(1, 1, 1, tzinfo=UTC), source="a\x00"),
        submitted(observation_id="i\x00", attributes={"k\x00": "v\x00"}),
    ]
    errors = submission_problems(items)
    assert [(e.loc, e.msg.split(" ")[0]) for e in errors] == [
        (("observations", 1, "snap"), "must"),
        (("observations", 1, "source"), "must"),
        (("observations", 2, "observation_id"), "must"),
        (("observations", 2, "attributes", "k\x00"), "key"),
        (("observations", 2, "attributes", "k\x00"), "must"),
    ]


def test_submission_problems_without_text_still_check_timestamps() -> None:
    items = [submitted(source="a\x00"), submitted(observed_at=MAX_TIMESTAMP)]
    errors = submission_problems(items, text=False)
    assert [e.loc for e in errors] == [("observations", 1, "observed_at")]
    assert submission_problems([submitted(source="a\x00")], text=False) == []


def test_the_fast_path_agrees_with_the_full_check() -> None:
    offset = timezone(timedelta(hours=2))
    cases = [
        [submitted()],
        [submitted(), submitted(snap=MAX_TIMESTAMP)],
        [submitted(observed_at=datetime(2026, 1, 1, tzinfo=offset))],
        [submitted(snap=datetime(1970, 1, 1, 1, 0, tzinfo=offset))],
    ]
    for items in cases:
        full = [e for item in items for e in bounds.submitted_problems(item, text=False)]
        # The fast path may only say "look closer", never pass what the full check refuses.
        assert not bounds.in_bounds(items) or full == []
        assert [e.loc[2:] for e in submission_problems(items, text=False)] == [e.loc for e in full]
    assert bounds.in_bounds([submitted(), submitted(snap=LAST, observed_at=MIN_TIMESTAMP)])


@pytest.mark.parametrize(
    "text",
    [
        "1970-01-01T00:00:00Z",
        "2199-12-31T23:59:59.999999Z",
        "2026-01-15T14:00:00+15:59",
        "2026-01-15t14:00:00-15:59",
        "1969-12-31T23:59:59.999999Z",
        "2200-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "2026-01-15T14:00:00+16:00",
        "2026-01-15T14:00:00-18:00",
    ],
)
def test_the_documented_pattern_agrees_with_the_check_away_from_the_offset_edge(
    text: str,
) -> None:
    ts = msgspec.json.decode(msgspec.json.encode(text), type=datetime)
    assert (re.match(bounds.TIMESTAMP_PATTERN, text) is not None) == (timestamp_problem(ts) is None)


def test_the_documented_nul_pattern_refuses_exactly_nul() -> None:
    assert re.match(bounds.NO_NUL_PATTERN, "kraken ✓") is not None
    assert re.match(bounds.NO_NUL_PATTERN, "a\x00b") is None
