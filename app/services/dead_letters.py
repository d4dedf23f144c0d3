"""Dead letters as an operator sees them: decode, select, format, plan a replay.

Pure functions over records already read from the dead-letter topic; `app/entrypoints/dlq.py`
does the Kafka reading and producing. Every text that came from a record (error, series,
topic) is made safe for a terminal before it is printed: a dead letter is, by definition,
a record that may hold anything.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from app.domain.dead_letter import (
    DEAD_LETTER_STAGES,
    REPLAYED_FROM_HEADER,
    DeadLetter,
)

ERROR_COLUMN_WIDTH = 72
SERIES_COLUMN_WIDTH = 24
UNDECODABLE_STAGE = "?"

_letters = msgspec.json.Decoder(DeadLetter)


class StoredLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One record of the dead-letter topic: where it sits, and the letter it holds.

    `letter` is None when the record itself is not a dead letter (`problem` says why);
    such a record is listed (stage "?") and never replayed.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    letter: DeadLetter | None
    problem: str | None = None

    @property
    def position(self) -> tuple[int, int]:
        return (self.partition, self.offset)

    @property
    def when(self) -> datetime:
        """When it was dead-lettered: the letter's own time, else the record timestamp."""
        if self.letter is not None and self.letter.dead_lettered_at is not None:
            at = self.letter.dead_lettered_at
            return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def stage(self) -> str:
        return UNDECODABLE_STAGE if self.letter is None else self.letter.stage

    @property
    def series(self) -> str:
        """The series id: the letter's reference_data_id, else the key as text."""
        if self.letter is not None and self.letter.reference_data_id is not None:
            return self.letter.reference_data_id
        key = self.letter.key if self.letter is not None else self.key
        if key is None:
            return ""
        return key.decode("utf-8", errors="backslashreplace")

    @property
    def error(self) -> str:
        if self.letter is None:
            return self.problem or ""
        return self.letter.error


def decode_letter(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
) -> StoredLetter:
    """A dead-letter record as read from Kafka; version-1 letters decode too."""
    try:
        letter = _letters.decode(value or b"")
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return StoredLetter(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            key=key,
            letter=None,
            problem=f"not a dead letter: {exc}",
        )
    return StoredLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        key=key,
        letter=letter,
    )


def parse_position(text: str) -> tuple[int, int]:
    """`P:O` (a dead letter's partition and offset in the DLQ topic)."""
    partition, sep, offset = text.strip().partition(":")
    try:
        if not sep:
            raise ValueError(text)
        parsed = (int(partition), int(offset))
    except ValueError:
        raise ValueError(f"expected PARTITION:OFFSET (e.g. 0:42), got {text!r}") from None
    if parsed[0] < 0 or parsed[1] < 0:
        raise ValueError(f"partition and offset are not negative, got {text!r}")
    return parsed


def parse_instant(text: str) -> datetime:
    """An ISO 8601 time with its UTC offset (`2026-12-03T10:00:00Z`, `...+01:00`)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 time with offset (e.g. 2026-12-03T10:00:00Z), got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"a time needs its UTC offset (e.g. 2026-12-03T10:00:00Z), got {text!r}")
    return parsed


class Selection(msgspec.Struct, frozen=True, kw_only=True):
    """Which dead letters: every given criterion must hold (an empty one holds for all).

    `limit` keeps the first letters in listing order (oldest first).
    """

    series: frozenset[str] = frozenset()
    stage: str | None = None
    error: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    positions: frozenset[tuple[int, int]] = frozenset()
    limit: int | None = None

    @property
    def selects_something(self) -> bool:
        """True when at least one criterion narrows the selection (limit does not)."""
        return bool(
            self.series
            or self.stage is not None
            or self.error is not None
            or self.since is not None
            or self.until is not None
            or self.positions
        )

    def matches(self, stored: StoredLetter) -> bool:
        if self.positions and stored.position not in self.positions:
            return False
        if self.series and stored.series not in self.series:
            return False
        if self.stage is not None and stored.stage != self.stage:
            return False
        if self.error is not None and self.error.casefold() not in stored.error.casefold():
            return False
        when = stored.when
        if self.since is not None and when < self.since:
            return False
        return not (self.until is not None and when >= self.until)


def select(letters: Iterable[StoredLetter], selection: Selection) -> list[StoredLetter]:
    """The matching letters, oldest first (then by DLQ partition and offset), limited."""
    chosen = sorted(
        (s for s in letters if selection.matches(s)),
        key=lambda s: (s.when, s.partition, s.offset),
    )
    return chosen if selection.limit is None else chosen[: max(selection.limit, 0)]


def printable(text: str) -> str:
    """Text with control and non-printable characters escaped (`\\x00`, `\\n`, `\\u2028`)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _origin(stored: StoredLetter) -> str:
    if stored.letter is None:
        return "-"
    letter = stored.letter
    return f"{printable(letter.origin_topic)}:{letter.origin_partition}:{letter.origin_offset}"


def table(
    letters: Sequence[StoredLetter],
    error_width: int = ERROR_COLUMN_WIDTH,
    line_width: int | None = None,
) -> list[str]:
    """Aligned text lines, a header first. The error is truncated to `error_width`, or,
    given a `line_width` (a terminal's), to what is left of it (at least 30)."""
    rows = [("DLQ", "WHEN", "STAGE", "SERIES", "ORIGIN")]
    rows.extend(
        (
            f"{s.partition}:{s.offset}",
            _instant(s.when),
            s.stage,
            _truncate(printable(s.series), SERIES_COLUMN_WIDTH) or "-",
            _origin(s),
        )
        for s in letters
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    if line_width is not None:
        error_width = max(30, line_width - sum(widths) - 2 * len(widths))
    errors = ["ERROR", *(_truncate(printable(s.error), error_width) for s in letters)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + "  " + error
        for row, error in zip(rows, errors, strict=True)
    ]


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def as_json(stored: StoredLetter, with_payload: bool = False) -> dict[str, Any]:
    """One letter as a JSON object: the full error; payload (base64) only when asked."""
    letter = stored.letter
    entry: dict[str, Any] = {
        "dlq_topic": stored.topic,
        "dlq_partition": stored.partition,
        "dlq_offset": stored.offset,
        "when": _instant(stored.when),
        "stage": stored.stage,
        "series": stored.series,
        "error": stored.error,
    }
    if letter is None:
        if with_payload:
            entry["key"] = _b64(stored.key)
        return entry
    entry.update(
        schema_version=letter.schema_version,
        dead_lettered_at=(
            None if letter.dead_lettered_at is None else _instant(letter.dead_lettered_at)
        ),
        origin_topic=letter.origin_topic,
        origin_partition=letter.origin_partition,
        origin_offset=letter.origin_offset,
        origin_timestamp_ms=letter.origin_timestamp_ms,
        value_bytes=None if letter.value is None else len(letter.value),
    )
    if with_payload:
        entry.update(
            key=_b64(letter.key),
            value=_b64(letter.value),
            headers=[[name, _b64(value)] for name, value in letter.headers],
        )
    return entry


def summary(letters: Sequence[StoredLetter], total: int, topic: str) -> str:
    """`3 dead letters (decode 2, store 1)`, with the topic's total when filtered."""
    counts = Counter(s.stage for s in letters)
    order = [*DEAD_LETTER_STAGES, UNDECODABLE_STAGE]
    per_stage = ", ".join(f"{stage} {counts[stage]}" for stage in order if counts[stage])
    noun = "dead letter" if len(letters) == 1 else "dead letters"
    head = f"{len(letters)} {noun}"
    if total != len(letters):
        head += f" of {total}"
    head += f" in {printable(topic)}"
    return f"{head} ({per_stage})" if per_stage else head


class Resubmission(msgspec.Struct, frozen=True, kw_only=True):
    """What replay produces for one letter: the original record plus where it came from."""

    source: StoredLetter
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    # A record without a key (a version 2 ingestion record, holding the series of one
    # partition) goes back to its origin partition; a keyed one goes where its key maps.
    partition: int | None = None


class Skipped(msgspec.Struct, frozen=True, kw_only=True):
    source: StoredLetter
    reason: str


def replayed_from(stored: StoredLetter) -> bytes:
    """The `qis-replayed-from` header value: `<dlq topic>:<partition>:<offset>`."""
    return f"{stored.topic}:{stored.partition}:{stored.offset}".encode()


def plan_replay(letters: Iterable[StoredLetter]) -> list[Resubmission | Skipped]:
    """A resubmission per letter that holds a record, a skip (with why) for the rest.

    The record keeps its key, value and headers; a `qis-replayed-from` header naming the
    letter replaces any earlier one (a letter replayed, dead-lettered again, replayed).
    """
    plan: list[Resubmission | Skipped] = []
    for stored in letters:
        letter = stored.letter
        if letter is None:
            plan.append(Skipped(source=stored, reason=stored.problem or "not a dead letter"))
        elif letter.value is None:
            plan.append(Skipped(source=stored, reason="the letter holds no record value"))
        else:
            headers = [(k, v) for k, v in letter.headers if k != REPLAYED_FROM_HEADER]
            headers.append((REPLAYED_FROM_HEADER, replayed_from(stored)))
            plan.append(
                Resubmission(
                    source=stored,
                    topic=letter.origin_topic,
                    key=letter.key,
                    value=letter.value,
                    headers=headers,
                    partition=letter.origin_partition if letter.key is None else None,
                )
            )
    return plan
