"""Dead letters as an operator sees them: decoding (v1 and v2), selection, formatting,
replay planning."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from app.domain.dead_letter import REPLAYED_FROM_HEADER, DeadLetter
from app.services.dead_letters import (
    Resubmission,
    Selection,
    Skipped,
    StoredLetter,
    as_json,
    decode_letter,
    parse_instant,
    parse_position,
    plan_replay,
    printable,
    select,
    summary,
    table,
)

DLQ = "qis.observations.dlq.v1"
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def stored(
    offset: int,
    *,
    partition: int = 0,
    error: str = "boom",
    stage: str = "store",
    at: datetime | None = T0,
    series: str | None = "EURUSD",
    key: bytes | None = b"EURUSD",
    value: bytes | None = b'{"v":1}',
    headers: list[tuple[str, bytes]] | None = None,
    timestamp_ms: int = T0_MS,
) -> StoredLetter:
    letter = DeadLetter(
        error=error,
        stage=stage,  # type: ignore[arg-type]
        dead_lettered_at=at,
        reference_data_id=series,
        origin_topic="qis.observations.v1",
        origin_partition=3,
        origin_offset=100 + offset,
        origin_timestamp_ms=T0_MS - 5,
        key=key,
        value=value,
        headers=headers or [],
    )
    return decode_letter(DLQ, partition, offset, timestamp_ms, key, msgspec.json.encode(letter))


def test_a_version_2_letter_decodes_with_every_field() -> None:
    s = stored(7, partition=2, headers=[("traceparent", b"00-ab")])
    assert s.letter is not None
    assert (s.position, s.stage, s.series, s.error) == ((2, 7), "store", "EURUSD", "boom")
    assert s.when == T0
    assert s.letter.headers == [("traceparent", b"00-ab")]
    assert s.letter.origin_offset == 107


def test_a_version_1_letter_decodes_as_a_decode_stage_letter_timed_by_its_record() -> None:
    v1 = (
        b'{"schema_version":1,"error":"DecodeError: bad","origin_topic":"qis.observations.v1",'
        b'"origin_partition":4,"origin_offset":9,"key":"' + base64.b64encode(b"GBP") + b'",'
        b'"value":"' + base64.b64encode(b"{oops") + b'"}'
    )
    s = decode_letter(DLQ, 1, 0, T0_MS + 1500, b"GBP", v1)
    assert s.letter is not None
    assert s.letter.schema_version == 1
    assert (s.stage, s.series, s.error) == ("decode", "GBP", "DecodeError: bad")
    assert s.when == T0 + timedelta(milliseconds=1500)
    assert s.letter.value == b"{oops"
    assert s.letter.headers == []


def test_a_record_that_is_not_a_dead_letter_is_listed_with_stage_question_mark() -> None:
    s = decode_letter(DLQ, 0, 3, T0_MS, b"\x00K", b"not json")
    assert s.letter is None
    assert s.stage == "?"
    assert s.series == "\x00K"
    assert printable(s.series) == "\\x00K"
    assert s.error.startswith("not a dead letter: ")


def test_series_falls_back_to_the_key_then_to_nothing() -> None:
    assert stored(0, series=None, key=b"USDJPY").series == "USDJPY"
    assert stored(0, series=None, key=b"\xffX").series == "\\xffX"
    assert stored(0, series=None, key=None).series == ""


def test_a_naive_dead_lettered_at_is_taken_as_utc() -> None:
    s = stored(0, at=datetime(2026, 12, 3, 9, 0))  # naive on purpose
    assert s.when == T0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0:42", (0, 42)), (" 11:0 ", (11, 0)), ("3:9000000000", (3, 9_000_000_000))],
)
def test_parse_position(text: str, expected: tuple[int, int]) -> None:
    assert parse_position(text) == expected


@pytest.mark.parametrize("text", ["", "0", "a:1", "1:b", "-1:0", "0:-3", "1:2:3", ":"])
def test_parse_position_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"PARTITION:OFFSET|not negative"):
        parse_position(text)


def test_parse_instant_needs_an_offset() -> None:
    assert parse_instant("2026-12-03T10:00:00Z") == datetime(2026, 12, 3, 10, tzinfo=UTC)
    plus_one = parse_instant("2026-12-03T11:00:00+01:00")
    assert plus_one == datetime(2026, 12, 3, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="needs its UTC offset"):
        parse_instant("2026-12-03T10:00:00")
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_instant("yesterday")


def _letters() -> list[StoredLetter]:
    return [
        stored(0, series="A", stage="decode", error="DecodeError: x", at=T0),
        stored(1, series="B", stage="store", error="CharacterNotInRepertoire", at=T0 + _m(1)),
        stored(2, series="A", stage="reconcile", error="TypeError: naive", at=T0 + _m(2)),
        stored(0, partition=1, series="C", stage="store", error="Numeric", at=T0 + _m(3)),
    ]


def _m(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)


def _positions(letters: list[StoredLetter]) -> list[tuple[int, int]]:
    return [s.position for s in letters]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (Selection(), [(0, 0), (0, 1), (0, 2), (1, 0)]),
        (Selection(series=frozenset({"A"})), [(0, 0), (0, 2)]),
        (Selection(series=frozenset({"A", "C"})), [(0, 0), (0, 2), (1, 0)]),
        (Selection(stage="store"), [(0, 1), (1, 0)]),
        (Selection(error="characternot"), [(0, 1)]),
        (Selection(since=T0 + _m(1)), [(0, 1), (0, 2), (1, 0)]),
        (Selection(until=T0 + _m(2)), [(0, 0), (0, 1)]),
        (Selection(since=T0 + _m(1), until=T0 + _m(3)), [(0, 1), (0, 2)]),
        (Selection(positions=frozenset({(1, 0), (0, 2), (5, 5)})), [(0, 2), (1, 0)]),
        (Selection(series=frozenset({"A"}), stage="decode"), [(0, 0)]),
        (Selection(limit=2), [(0, 0), (0, 1)]),
        (Selection(stage="store", limit=1), [(0, 1)]),
        (Selection(series=frozenset({"Z"})), []),
    ],
)
def test_select(selection: Selection, expected: list[tuple[int, int]]) -> None:
    assert _positions(select(_letters(), selection)) == expected


def test_select_orders_oldest_first_across_partitions() -> None:
    letters = [
        stored(5, partition=0, at=T0 + _m(5)),
        stored(9, partition=1, at=T0),
        stored(6, partition=0, at=T0),
    ]
    assert _positions(select(letters, Selection())) == [(0, 6), (1, 9), (0, 5)]


def test_a_limit_is_not_a_selector_but_every_criterion_is() -> None:
    assert not Selection().selects_something
    assert not Selection(limit=3).selects_something
    assert Selection(stage="store").selects_something
    assert Selection(positions=frozenset({(0, 0)})).selects_something
    assert Selection(since=T0).selects_something


def test_printable_escapes_control_characters() -> None:
    assert printable("plain text") == "plain text"
    assert printable("a\x00b\nc\u2028") == "a\\x00b\\nc\\u2028"


def test_table_aligns_and_truncates_the_error_and_escapes_it() -> None:
    letters = [
        stored(0, error="x" * 200),
        stored(12, partition=3, error="line1\nline2\x00", series="LONGER.SERIES"),
    ]
    lines = table(letters, error_width=20)
    assert lines[0].split() == ["DLQ", "WHEN", "STAGE", "SERIES", "ORIGIN", "ERROR"]
    assert lines[1].split() == [
        "0:0",
        "2026-12-03T09:00:00.000Z",
        "store",
        "EURUSD",
        "qis.observations.v1:3:100",
        "x" * 19 + "…",
    ]
    assert lines[2].endswith("line1\\nline2\\x00")
    assert lines[2].split()[0] == "3:12"
    # columns line up: the ERROR column starts at the same place on every line
    starts = {line.index(cell) for line, cell in zip(lines, ["ERROR", "xxx", "line1"], strict=True)}
    assert len(starts) == 1
    # given a terminal's width, the error takes what is left of it
    wide = table(letters, line_width=len(lines[1]) - 20 + 50)
    assert wide[1].endswith("x" * 49 + "…")
    assert len(wide[1]) == len(lines[1]) - 20 + 50
    narrow = table(letters, line_width=10)
    assert narrow[1].endswith("x" * 29 + "…")


def test_json_has_the_full_error_and_payload_only_when_asked() -> None:
    s = stored(4, error="e" * 500, headers=[("h", b"\x01")])
    plain = as_json(s)
    assert plain["error"] == "e" * 500
    assert plain["dlq_partition"] == 0
    assert plain["dlq_offset"] == 4
    assert plain["when"] == "2026-12-03T09:00:00.000Z"
    assert plain["origin_offset"] == 104
    assert plain["value_bytes"] == 7
    assert "key" not in plain
    assert "value" not in plain
    assert "headers" not in plain
    full = as_json(s, with_payload=True)
    assert base64.b64decode(full["key"]) == b"EURUSD"
    assert base64.b64decode(full["value"]) == b'{"v":1}'
    assert full["headers"] == [["h", base64.b64encode(b"\x01").decode()]]
    msgspec.json.encode(full)  # encodable as is


def test_summary_counts_per_stage_in_stage_order() -> None:
    letters = _letters()
    assert summary(letters, 4, DLQ) == f"4 dead letters in {DLQ} (decode 1, store 2, reconcile 1)"
    assert summary(letters[:1], 4, DLQ) == f"1 dead letter of 4 in {DLQ} (decode 1)"
    assert summary([], 0, DLQ) == f"0 dead letters in {DLQ}"
    odd = decode_letter(DLQ, 0, 9, T0_MS, None, b"")
    assert summary([odd], 1, DLQ) == f"1 dead letter in {DLQ} (? 1)"


def test_replay_plan_keeps_the_record_and_adds_one_replayed_from_header() -> None:
    with_headers = stored(
        3,
        partition=2,
        headers=[("traceparent", b"00-x"), (REPLAYED_FROM_HEADER, b"old:0:0")],
    )
    no_value = stored(4, value=None)
    not_a_letter = decode_letter(DLQ, 1, 1, T0_MS, b"K", b"[]")
    plan = plan_replay([with_headers, no_value, not_a_letter])
    first, second, third = plan
    assert isinstance(first, Resubmission)
    assert first.topic == "qis.observations.v1"
    assert (first.key, first.value) == (b"EURUSD", b'{"v":1}')
    assert first.headers == [
        ("traceparent", b"00-x"),
        (REPLAYED_FROM_HEADER, f"{DLQ}:2:3".encode()),
    ]
    assert isinstance(second, Skipped)
    assert second.reason == "the letter holds no record value"
    assert isinstance(third, Skipped)
    assert third.reason.startswith("not a dead letter")


def test_a_keyless_record_is_replayed_to_its_origin_partition_a_keyed_one_by_its_key() -> None:
    keyless, keyed = plan_replay([stored(1, key=None, series=None), stored(2)])
    assert isinstance(keyless, Resubmission)
    assert isinstance(keyed, Resubmission)
    # a version 2 record holds the series of one partition: it goes back there
    assert (keyless.key, keyless.partition) == (None, 3)
    assert (keyed.key, keyed.partition) == (b"EURUSD", None)
