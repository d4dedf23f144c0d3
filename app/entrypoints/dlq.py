"""`qis dlq list` and `qis dlq replay`: look at dead letters, re-submit them after a fix.

The dead-letter topic is read from its beginning to its end at the time of the call,
without a consumer group: listing never moves anything and stops by itself. Replay
produces each selected letter's original record (key, value, headers) to its origin topic
again, with a `qis-replayed-from: <dlq topic>:<partition>:<offset>` header, through the
idempotent acks=all producer, and waits for the broker's acknowledgements. The letters
stay in the dead-letter topic (Kafka does not delete records).

Replay is safe to repeat: observation ids are derived from the observation's content, so
the worker stores a re-submitted observation at most once, however many times it is
replayed. Replay itself does not deduplicate: replaying twice produces two records.

`list_dead_letters` and `replay_dead_letters` are the commands without the command line,
for tests and scripts. `register(sub)` adds `dlq` to `qis`'s sub-parsers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from aiokafka.errors import KafkaError

from app.domain.dead_letter import DEAD_LETTER_STAGES
from app.entrypoints.unreachable import EXIT_UNREACHABLE, Unreachable, reason
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

if TYPE_CHECKING:
    from app.settings import KafkaSettings, Settings

T = TypeVar("T")
EXIT_MISSING_TOPIC = 1


class ReplayFailure(msgspec.Struct, frozen=True, kw_only=True):
    source: StoredLetter
    error: str


class Replayed(msgspec.Struct, frozen=True, kw_only=True):
    """A resubmission the broker acknowledged, at `partition`/`offset` of `topic`."""

    resubmission: Resubmission
    partition: int
    offset: int


class ReplayReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one replay did (or, for a dry run, would do): every selected letter is in
    exactly one of replayed, planned (dry run only), skipped or failed."""

    dry_run: bool
    replayed: list[Replayed]
    planned: list[Resubmission]
    skipped: list[Skipped]
    failed: list[ReplayFailure]
    missing: list[tuple[int, int]]  # --offset positions that hold no letter


async def read_dead_letters(settings: KafkaSettings) -> list[StoredLetter]:
    """Every letter of the dead-letter topic, in partition then offset order."""
    from app.adapters.kafka import read_topic

    topic = settings.dlq_topic
    letters: list[StoredLetter] = []
    async with contextlib.aclosing(read_topic(settings, topic)) as records:
        async for record in records:
            letters.append(
                decode_letter(
                    topic,
                    record.partition,
                    record.offset,
                    record.timestamp,
                    record.key,
                    record.value,
                )
            )
    return letters


async def list_dead_letters(
    settings: KafkaSettings, selection: Selection
) -> tuple[list[StoredLetter], int]:
    """The selected letters (oldest first) and how many the topic holds in all."""
    letters = await read_dead_letters(settings)
    return select(letters, selection), len(letters)


async def replay_dead_letters(
    settings: KafkaSettings, selection: Selection, *, dry_run: bool = False
) -> ReplayReport:
    """Re-submit the selected letters to their origin topics; see the module docstring.

    Raises TopicNotFound when the dead-letter topic does not exist and KafkaError when no
    broker answers. A letter whose origin topic is not one of the platform's topics, or
    that the broker refuses, is reported as failed; the others are still produced.
    """
    from app.adapters.kafka import new_producer, topic_partitions

    chosen = select(await read_dead_letters(settings), selection)
    found = {s.position for s in chosen}
    missing = sorted(p for p in selection.positions if p not in found)
    plan = plan_replay(chosen)
    skipped = [step for step in plan if isinstance(step, Skipped)]
    wanted = [step for step in plan if isinstance(step, Resubmission)]
    owned = set(topic_partitions(settings))
    failed = [
        ReplayFailure(
            source=r.source,
            error=f"origin topic {printable(r.topic)!r} is not one of the platform's topics",
        )
        for r in wanted
        if r.topic not in owned
    ]
    wanted = [r for r in wanted if r.topic in owned]
    if dry_run:
        return ReplayReport(
            dry_run=True,
            replayed=[],
            planned=wanted,
            skipped=skipped,
            failed=failed,
            missing=missing,
        )
    replayed: list[Replayed] = []
    if wanted:
        producer = new_producer(settings)
        await producer.start()
        try:
            existing = (await producer.client.fetch_all_metadata()).topics()
            sends: list[tuple[Resubmission, Any]] = []
            for r in wanted:
                if r.topic not in existing:
                    failed.append(
                        ReplayFailure(source=r.source, error=f"topic {r.topic} does not exist")
                    )
                    continue
                future = await producer.send(
                    r.topic, value=r.value, key=r.key, partition=r.partition, headers=r.headers
                )
                sends.append((r, future))
            outcomes = await asyncio.gather(*(f for _, f in sends), return_exceptions=True)
        finally:
            await producer.stop()
        for (r, _), outcome in zip(sends, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed.append(ReplayFailure(source=r.source, error=repr(outcome)))
            else:
                replayed.append(
                    Replayed(resubmission=r, partition=outcome.partition, offset=outcome.offset)
                )
    return ReplayReport(
        dry_run=False,
        replayed=replayed,
        planned=[],
        skipped=skipped,
        failed=failed,
        missing=missing,
    )


# --- command line -------------------------------------------------------------------


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(f"qis dlq: {line}\n")


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type=` from a parser raising ValueError (argparse prints the message)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"expected a positive count, got {text!r}")
    return value


def _add_selectors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--series", action="append", default=[], metavar="ID", help="this series (repeatable)"
    )
    parser.add_argument("--stage", choices=DEAD_LETTER_STAGES, help="failed at this stage")
    parser.add_argument(
        "--error", metavar="SUBSTRING", help="the error contains this text (case-insensitive)"
    )
    parser.add_argument(
        "--since",
        type=_argument(parse_instant),
        metavar="TIME",
        help="dead-lettered at or after this ISO 8601 time with offset (2026-12-03T10:00:00Z)",
    )
    parser.add_argument(
        "--until", type=_argument(parse_instant), metavar="TIME", help="dead-lettered before this"
    )
    parser.add_argument(
        "--limit", type=_argument(_positive), metavar="N", help="at most N letters, oldest first"
    )
    parser.add_argument(
        "--offset",
        action="append",
        type=_argument(parse_position),
        metavar="P:O",
        help="the letter at this DLQ partition:offset (repeatable)",
    )


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        series=frozenset(args.series),
        stage=args.stage,
        error=args.error,
        since=args.since,
        until=args.until,
        positions=frozenset(args.offset or ()),
        limit=args.limit,
    )


def _run(settings: Settings, command: str, work: Coroutine[Any, Any, None]) -> int | None:
    """Run `work` (a coroutine); on a Kafka failure print one line and return its exit code."""
    from app.adapters.kafka import TopicNotFound

    kafka = settings.kafka
    # The one line below says it all; aiokafka would log each failed connection too.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        asyncio.run(work)
    except TopicNotFound:
        _err(f"{command}: topic {kafka.dlq_topic} does not exist (`qis kafka topics` creates it)")
        return EXIT_MISSING_TOPIC
    except (KafkaError, OSError, TimeoutError) as exc:
        _err(f"{command}: {Unreachable('Kafka', kafka.bootstrap_servers, reason(exc))}")
        return EXIT_UNREACHABLE
    return None


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    if args.with_payload and not args.json:
        _err("list: --with-payload goes with --json")
        return 2
    selection = _selection(args)
    result: list[tuple[list[StoredLetter], int]] = []

    async def work() -> None:
        result.append(await list_dead_letters(settings.kafka, selection))

    failed = _run(settings, "list", work())
    if failed is not None:
        return failed
    letters, total = result[0]
    line = summary(letters, total, settings.kafka.dlq_topic)
    if args.json:
        encoder = msgspec.json.Encoder()
        for stored in letters:
            _out(encoder.encode(as_json(stored, with_payload=args.with_payload)).decode())
        sys.stderr.write(line + "\n")
        return 0
    if letters:
        # A terminal's width when there is one; a fixed error column when piped.
        columns = shutil.get_terminal_size(fallback=(0, 0)).columns if sys.stdout.isatty() else 0
        for row in table(letters, line_width=columns or None):
            _out(row)
    _out(line)
    return 0


def _describe(stored: StoredLetter) -> str:
    series = printable(stored.series) or "-"
    return f"{stored.partition}:{stored.offset} (series {series}, stage {stored.stage})"


def print_report(report: ReplayReport, dlq_topic: str) -> None:
    for position in report.missing:
        _out(f"no dead letter at {position[0]}:{position[1]}")
    for skip in report.skipped:
        _out(f"skipped {_describe(skip.source)}: {printable(skip.reason)}")
    for failure in report.failed:
        _out(f"failed {_describe(failure.source)}: {printable(failure.error)}")
    for r in report.planned:
        _out(
            f"would replay {_describe(r.source)} -> {printable(r.topic)}"
            f" ({len(r.value)} bytes, {len(r.headers)} header{'' if len(r.headers) == 1 else 's'})"
        )
    for done in report.replayed:
        r = done.resubmission
        _out(
            f"replayed {_describe(r.source)} -> {printable(r.topic)}:{done.partition}:{done.offset}"
        )
    tail = (
        f"skipped {len(report.skipped)}, failed {len(report.failed)} (from {printable(dlq_topic)})"
    )
    if report.dry_run:
        _out(f"dry run: would replay {len(report.planned)}, {tail}; nothing produced")
    else:
        _out(f"replayed {len(report.replayed)}, {tail}")


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    selection = _selection(args)
    if not selection.selects_something and not args.all:
        _err(
            "replay: no selector; give --series, --stage, --error, --since, --until or"
            " --offset, or --all to replay every dead letter"
        )
        return 2
    result: list[ReplayReport] = []

    async def work() -> None:
        result.append(await replay_dead_letters(settings.kafka, selection, dry_run=args.dry_run))

    failed = _run(settings, "replay", work())
    if failed is not None:
        return failed
    report = result[0]
    print_report(report, settings.kafka.dlq_topic)
    return 1 if report.failed or report.missing else 0


def _guarded(command: Callable[[Settings, argparse.Namespace], int]) -> Callable[..., int]:
    """`command`, ending quietly when the reader of its output goes away (`| head`) or on
    Ctrl-C, instead of a traceback."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return command(settings, args)
        except BrokenPipeError:
            # Python would report the failed flush at exit: point stdout at nothing first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except KeyboardInterrupt:
            _err("interrupted")
            return 130

    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dlq list` and `dlq replay` to `qis`."""
    dlq = sub.add_parser(
        "dlq",
        help="list and replay dead letters",
        description="Dead letters: records the pipeline set aside, with error, stage, origin.",
    ).add_subparsers(dest="dlq", required=True)
    listing = dlq.add_parser(
        "list",
        help="list dead letters (oldest first)",
        description="Read the dead-letter topic from its beginning to its current end and"
        " list the letters that match every filter. Exit 1 when the topic does not exist,"
        " 2 when Kafka does not answer.",
    )
    _add_selectors(listing)
    listing.add_argument(
        "--json", action="store_true", help="one JSON object per letter (full error)"
    )
    listing.add_argument(
        "--with-payload",
        action="store_true",
        help="with --json: the record's key, value and headers (base64)",
    )
    listing.set_defaults(run=_guarded(cmd_list))
    replay = dlq.add_parser(
        "replay",
        help="re-submit selected dead letters to their origin topic",
        description="Produce each selected letter's original record (key, value, headers,"
        " plus qis-replayed-from) to its origin topic and wait for the acknowledgements."
        " Safe to repeat: observation ids are content-derived, so the worker stores a"
        " replayed observation at most once. Exit 1 when a letter failed or an --offset"
        " names no letter, 2 when Kafka does not answer or no selector was given.",
    )
    _add_selectors(replay)
    replay.add_argument("--all", action="store_true", help="allow replaying without any selector")
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would be re-submitted; produce nothing"
    )
    replay.set_defaults(run=_guarded(cmd_replay))
