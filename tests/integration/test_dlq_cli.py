"""`qis dlq list` and `qis dlq replay` against the real broker.

Each test gets a dead-letter topic and an observations topic of its own, filled with
known letters (version 2, one version 1, one without a value), and runs the commands as
`qis` does (parsed arguments, `args.run(settings, args)`), in a thread: the commands run
their own event loop. Replay is checked on the raw records of the origin topic, read back
with a plain consumer.

Replay produces a record each time it is run; that a replayed observation is stored once
is the worker's idempotent insert (content-derived ids), tested end to end elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.domain.dead_letter import (
    ERROR_HEADER,
    REPLAYED_FROM_HEADER,
    STAGE_HEADER,
    DeadLetter,
)
from app.entrypoints.cli import build_parser
from app.entrypoints.dlq import replay_dead_letters
from app.services.dead_letters import Selection
from app.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def _create_topics(settings: Settings, *names: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def _raw_records(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic`, read with a plain consumer (not the code under test)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(20):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=200)
                records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


@dataclass(frozen=True)
class Letters:
    """The test's topics and settings, and each letter's position in the DLQ topic."""

    settings: Settings
    dlq: str
    origin: str
    letters: dict[str, DeadLetter | None]  # name -> letter (None: the version-1 one)
    at: dict[str, tuple[int, int]]  # name -> (partition, offset)
    v1_value: bytes

    def name_of(self, position: tuple[int, int]) -> str:
        return next(name for name, at in self.at.items() if at == position)


def _letter(
    origin: str,
    series: str,
    stage: str,
    error: str,
    at: datetime,
    offset: int,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None = None,
) -> DeadLetter:
    return DeadLetter(
        error=error,
        stage=stage,  # type: ignore[arg-type]
        dead_lettered_at=at,
        reference_data_id=series,
        origin_topic=origin,
        origin_partition=1,
        origin_offset=offset,
        origin_timestamp_ms=int(at.timestamp() * 1000) - 50,
        key=series.encode(),
        value=value,
        headers=headers or [],
    )


@pytest.fixture
async def filled(settings: Settings) -> Letters:
    """Five letters: A decode, B store (with headers), A reconcile, C version 1, D no value."""
    suffix = uuid.uuid4().hex[:10]
    dlq, origin = f"test.dlq.{suffix}", f"test.obs.{suffix}"
    await _create_topics(settings, dlq, origin)
    kafka = msgspec.structs.replace(settings.kafka, dlq_topic=dlq, observations_topic=origin)
    test_settings = msgspec.structs.replace(settings, kafka=kafka)
    trace = ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    letters: dict[str, DeadLetter | None] = {
        "A1": _letter(origin, "A", "decode", "DecodeError: JSON is malformed", T0, 10, b"{bad"),
        "B": _letter(
            origin,
            "B",
            "store",
            "CharacterNotInRepertoireError: invalid byte sequence 0x00",
            T0 + _minutes(1),
            11,
            b'{"schema_version":1,"reference_data_id":"B"}',
            [trace, ("x-bin", b"\x00\xff")],
        ),
        "A2": _letter(
            origin,
            "A",
            "reconcile",
            "TypeError: can't compare offset-naive and offset-aware datetimes",
            T0 + _minutes(2),
            12,
            b'{"schema_version":1,"reference_data_id":"A"}',
        ),
        "C": None,
        "D": _letter(origin, "D", "store", "NumericValueOutOfRange", T0 + _minutes(3), 13, None),
    }
    partition_of = {"A1": 0, "B": 1, "A2": 0, "C": 2, "D": 2}
    v1_value = b'{"schema_version":1,"reference_data_id":"C","value":1}'
    v1 = {
        "schema_version": 1,
        "error": "DecodeError: Object missing required field `observations`",
        "origin_topic": origin,
        "origin_partition": 2,
        "origin_offset": 7,
        "key": base64.b64encode(b"C").decode(),
        "value": base64.b64encode(v1_value).decode(),
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    at: dict[str, tuple[int, int]] = {}
    key: bytes | None
    timestamp: int | None
    try:
        for name, letter in letters.items():
            if letter is None:  # a version-1 letter, as the worker wrote them before stages
                value, key, headers = json.dumps(v1).encode(), b"C", [(ERROR_HEADER, b"x")]
                timestamp = int((T0 + _minutes(2.5)).timestamp() * 1000)
            else:
                value, key = msgspec.json.encode(letter), letter.key
                headers = [
                    (ERROR_HEADER, letter.error.encode()),
                    (STAGE_HEADER, letter.stage.encode()),
                ]
                timestamp = None
            meta = await producer.send_and_wait(
                dlq,
                value=value,
                key=key,
                partition=partition_of[name],
                headers=headers,
                timestamp_ms=timestamp,
            )
            at[name] = (meta.partition, meta.offset)
    finally:
        await producer.stop()
    return Letters(test_settings, dlq, origin, letters, at, v1_value)


async def qis_dlq(
    settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    """Run `qis dlq ARGV` as `qis` does; return its exit code, stdout and stderr."""
    capsys.readouterr()
    args = build_parser().parse_args(["dlq", *argv])
    code: int = await asyncio.to_thread(args.run, settings, args)
    out, err = capsys.readouterr()
    return code, out, err


async def listed(filled: Letters, capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """The names of the letters `qis dlq list --json ARGV` prints, in its order."""
    code, out, err = await qis_dlq(filled.settings, capsys, "list", "--json", *argv)
    assert code == 0, err
    entries = [json.loads(line) for line in out.splitlines()]
    assert all(e["dlq_topic"] == filled.dlq for e in entries)
    return [filled.name_of((e["dlq_partition"], e["dlq_offset"])) for e in entries]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), ["A1", "B", "A2", "C", "D"]),
        (("--series", "A"), ["A1", "A2"]),
        (("--series", "A", "--series", "C"), ["A1", "A2", "C"]),
        (("--stage", "store"), ["B", "D"]),
        (("--stage", "decode"), ["A1", "C"]),  # a version-1 letter is a decode letter
        (("--error", "OFFSET-NAIVE"), ["A2"]),
        (("--error", "missing required field"), ["C"]),
        (
            ("--since", "2026-01-05T10:01:00Z", "--until", "2026-01-05T11:03:00+01:00"),
            ["B", "A2", "C"],
        ),
        (("--since", "2026-01-05T10:03:00Z"), ["D"]),
        (("--until", "2026-01-05T10:00:00Z"), []),
        (("--limit", "2"), ["A1", "B"]),
        (("--series", "A", "--stage", "reconcile"), ["A2"]),
        (("--offset", "2:0", "--offset", "0:1"), ["A2", "C"]),
        (("--offset", "2:0", "--stage", "store"), []),
    ],
)
async def test_list_filters(
    filled: Letters,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    expected: list[str],
) -> None:
    assert await listed(filled, capsys, *argv) == expected


async def test_list_json_has_the_full_letter_and_the_payload_only_when_asked(
    filled: Letters, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await qis_dlq(filled.settings, capsys, "list", "--json", "--series", "B")
    assert code == 0
    (entry,) = [json.loads(line) for line in out.splitlines()]
    letter = filled.letters["B"]
    assert letter is not None
    assert entry["error"] == letter.error
    assert entry["stage"] == "store"
    assert entry["series"] == "B"
    assert entry["when"] == "2026-01-05T10:01:00.000Z"
    assert (entry["origin_topic"], entry["origin_partition"], entry["origin_offset"]) == (
        filled.origin,
        1,
        11,
    )
    assert "value" not in entry
    assert err.strip() == f"1 dead letter of 5 in {filled.dlq} (store 1)"

    code, out, _ = await qis_dlq(
        filled.settings, capsys, "list", "--json", "--with-payload", "--series", "C"
    )
    (v1,) = [json.loads(line) for line in out.splitlines()]
    assert v1["schema_version"] == 1
    assert v1["stage"] == "decode"
    assert v1["dead_lettered_at"] is None
    assert v1["when"] == "2026-01-05T10:02:30.000Z"  # the record's timestamp
    assert base64.b64decode(v1["value"]) == filled.v1_value
    assert base64.b64decode(v1["key"]) == b"C"


async def test_list_table_and_summary(filled: Letters, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await qis_dlq(filled.settings, capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["DLQ", "WHEN", "STAGE", "SERIES", "ORIGIN", "ERROR"]
    assert [line.split()[0] for line in lines[1:-1]] == [
        f"{p}:{o}" for p, o in (filled.at[n] for n in ("A1", "B", "A2", "C", "D"))
    ]
    assert lines[2].split()[1:5] == [
        "2026-01-05T10:01:00.000Z",
        "store",
        "B",
        f"{filled.origin}:1:11",
    ]
    assert lines[-1] == f"5 dead letters in {filled.dlq} (decode 2, store 2, reconcile 1)"


async def test_list_of_an_empty_topic_and_of_a_missing_one(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = f"test.dlq.{uuid.uuid4().hex[:10]}"
    await _create_topics(settings, empty)
    empty_settings = msgspec.structs.replace(
        settings, kafka=msgspec.structs.replace(settings.kafka, dlq_topic=empty)
    )
    assert await qis_dlq(empty_settings, capsys, "list") == (0, f"0 dead letters in {empty}\n", "")

    missing = f"test.dlq.missing.{uuid.uuid4().hex[:10]}"
    missing_settings = msgspec.structs.replace(
        settings, kafka=msgspec.structs.replace(settings.kafka, dlq_topic=missing)
    )
    code, out, err = await qis_dlq(missing_settings, capsys, "list")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"qis dlq: list: topic {missing} does not exist (`qis kafka topics` creates it)"
    ]


async def test_an_unreachable_broker_is_one_line_and_exit_2(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    down = msgspec.structs.replace(
        settings, kafka=msgspec.structs.replace(settings.kafka, bootstrap_servers="127.0.0.1:9")
    )
    for argv in (("list",), ("replay", "--all")):
        code, out, err = await qis_dlq(down, capsys, *argv)
        assert (code, out) == (2, "")
        (line,) = err.splitlines()
        assert line == f"qis dlq: {argv[0]}: cannot reach Kafka at 127.0.0.1:9 (no broker answered)"


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for argv, message in (
        (["--since", "2026-01-05"], "needs its UTC offset"),
        (["--until", "soon"], "ISO 8601"),
        (["--limit", "0"], "positive"),
        (["--stage", "nowhere"], "invalid choice"),
    ):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(["dlq", "list", *argv])
        assert exited.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["dlq", "replay", "--offset", "3"])
    assert "PARTITION:OFFSET" in capsys.readouterr().err


async def test_dry_run_prints_the_plan_and_produces_nothing(
    filled: Letters, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await qis_dlq(filled.settings, capsys, "replay", "--stage", "store", "--dry-run")
    assert code == 0
    b, d = filled.at["B"], filled.at["D"]
    assert out.splitlines() == [
        f"skipped {d[0]}:{d[1]} (series D, stage store): the letter holds no record value",
        f"would replay {b[0]}:{b[1]} (series B, stage store) -> {filled.origin}"
        " (44 bytes, 3 headers)",
        f"dry run: would replay 1, skipped 1, failed 0 (from {filled.dlq}); nothing produced",
    ]
    assert await _raw_records(filled.settings, filled.origin) == []


async def test_replay_needs_a_selector_or_all(
    filled: Letters, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in ((), ("--dry-run",), ("--limit", "3")):
        code, out, err = await qis_dlq(filled.settings, capsys, "replay", *argv)
        assert (code, out) == (2, "")
        assert "no selector" in err
    assert await _raw_records(filled.settings, filled.origin) == []


async def test_replay_produces_the_original_record_with_a_replayed_from_header(
    filled: Letters, capsys: pytest.CaptureFixture[str]
) -> None:
    b = filled.at["B"]
    code, out, _ = await qis_dlq(filled.settings, capsys, "replay", "--offset", f"{b[0]}:{b[1]}")
    assert code == 0
    (record,) = await _raw_records(filled.settings, filled.origin)
    letter = filled.letters["B"]
    assert letter is not None
    assert record.key == b"B"
    assert record.value == letter.value
    assert list(record.headers) == [
        *letter.headers,
        (REPLAYED_FROM_HEADER, f"{filled.dlq}:{b[0]}:{b[1]}".encode()),
    ]
    assert out.splitlines() == [
        f"replayed {b[0]}:{b[1]} (series B, stage store) -> {filled.origin}:"
        f"{record.partition}:{record.offset}",
        f"replayed 1, skipped 0, failed 0 (from {filled.dlq})",
    ]


async def test_replay_of_a_version_1_letter(
    filled: Letters, capsys: pytest.CaptureFixture[str]
) -> None:
    c = filled.at["C"]
    code, _, _ = await qis_dlq(filled.settings, capsys, "replay", "--series", "C")
    assert code == 0
    (record,) = await _raw_records(filled.settings, filled.origin)
    assert (record.key, record.value) == (b"C", filled.v1_value)
    assert list(record.headers) == [(REPLAYED_FROM_HEADER, f"{filled.dlq}:{c[0]}:{c[1]}".encode())]


async def test_replaying_twice_produces_two_records(filled: Letters) -> None:
    """Replay does not deduplicate; the worker's content-derived ids do (tested e2e)."""
    selection = Selection(series=frozenset({"A"}))
    first = await replay_dead_letters(filled.settings.kafka, selection)
    second = await replay_dead_letters(filled.settings.kafka, selection)
    for report in (first, second):
        assert [r.resubmission.source.position for r in report.replayed] == [
            filled.at["A1"],
            filled.at["A2"],
        ]
        assert (report.skipped, report.failed, report.missing) == ([], [], [])
    a2 = filled.letters["A2"]
    assert a2 is not None
    records = await _raw_records(filled.settings, filled.origin)
    assert sorted(r.value for r in records) == sorted(
        [b"{bad", b"{bad", a2.value or b"", a2.value or b""]
    )
    assert {r.key for r in records} == {b"A"}
    # the same key lands on the same partition each time
    assert len({r.partition for r in records}) == 1


async def test_replay_all_skips_the_letter_without_value_and_reports_missing_offsets(
    filled: Letters, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await qis_dlq(filled.settings, capsys, "replay", "--all")
    assert code == 0
    assert out.splitlines()[-1] == f"replayed 4, skipped 1, failed 0 (from {filled.dlq})"
    records = await _raw_records(filled.settings, filled.origin)
    assert sorted(r.key for r in records) == [b"A", b"A", b"B", b"C"]

    code, out, _ = await qis_dlq(
        filled.settings, capsys, "replay", "--offset", "2:999", "--dry-run"
    )
    assert code == 1
    assert out.splitlines()[0] == "no dead letter at 2:999"


async def test_a_letter_naming_a_foreign_origin_topic_is_not_replayed(
    filled: Letters, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = msgspec.structs.replace(
        filled.letters["D"],  # type: ignore[type-var]
        origin_topic="__consumer_offsets",
        value=b"x",
        reference_data_id="F",
    )
    producer = AIOKafkaProducer(bootstrap_servers=filled.settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        meta = await producer.send_and_wait(filled.dlq, msgspec.json.encode(foreign), partition=0)
    finally:
        await producer.stop()
    code, out, _ = await qis_dlq(filled.settings, capsys, "replay", "--series", "F")
    assert code == 1
    assert out.splitlines()[0] == (
        f"failed 0:{meta.offset} (series F, stage store):"
        " origin topic '__consumer_offsets' is not one of the platform's topics"
    )
