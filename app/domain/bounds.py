"""What the platform can hold: the one definition of the bounds of every accepted value.

Anything outside these bounds is refused at the edge (422/400 problem+json) and, should it
reach the worker anyway (an old record, a producer that skipped the API), is refused
again there by `observation_problems` instead of failing in PostgreSQL or in arithmetic.
The reasons, for users, are in docs/bounds.md.

- Text (sources, ids, attribute keys and values, configured source names, cursors): no
  NUL character (U+0000; PostgreSQL `text` and `jsonb` cannot store it) and valid Unicode
  (no lone surrogate; it has no UTF-8 encoding, which PostgreSQL, Kafka and JSON need).
  msgspec already refuses a lone-surrogate escape such as `"\\ud800"` as malformed JSON,
  so through the API only NUL reaches this check.
- Timestamps: aware, UTC offset at most +-15:59 (PostgreSQL's text input refuses more:
  "time zone displacement out of range"), from 1970-01-01T00:00:00Z inclusive to
  2200-01-01T00:00:00Z exclusive.
- Durations added to or subtracted from a timestamp (window, staleness, query windows) are
  at most `MAX_SHIFT`, so `snap +- duration` stays far inside what Python's `datetime`
  (years 1 to 9999), PostgreSQL and 64-bit nanoseconds since the epoch (until 2262) hold.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from app.domain.errors import FieldError

SERIES_ID_PATTERN = r"^[A-Z0-9][A-Z0-9._:-]{0,63}$"
MAX_SOURCE_LENGTH = 64
MAX_OBSERVATION_ID_LENGTH = 128
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_STRING = 256
_SERIES_ID = re.compile(SERIES_ID_PATTERN)


def is_valid_series_id(reference_data_id: str) -> bool:
    """True when the id matches `SERIES_ID_PATTERN` (e.g. `ETH-USD`)."""
    return _SERIES_ID.fullmatch(reference_data_id) is not None


MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
"""Earliest accepted timestamp (inclusive)."""
MAX_TIMESTAMP = datetime(2200, 1, 1, tzinfo=UTC)
"""First refused timestamp (the range is half-open)."""
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)
"""Largest accepted UTC offset either way (every real zone is within -12:00..+14:00)."""
MAX_SHIFT = timedelta(days=366)
"""Largest duration any rule adds to or subtracts from an accepted timestamp."""

MAX_FLOAT = 1.7976931348623157e308
"""Largest finite float: a `le`/`ge` of +-this rejects NaN and +-infinity."""
MAX_INT32 = 2**31 - 1
"""Largest PostgreSQL `integer` (versions)."""

NUL = "\x00"
NO_NUL_PATTERN = "^[^\\u0000]*$"
"""JSON Schema (ECMA 262) pattern of a string without NUL; Python's `re` reads it too."""
NO_NUL_SCHEMA: dict[str, Any] = {"pattern": NO_NUL_PATTERN}

TEXT_RULE = "no NUL character (U+0000) and no lone surrogate"
TIMESTAMP_RULE = (
    "RFC 3339 with a UTC offset (at most +-15:59), "
    "from 1970-01-01T00:00:00Z inclusive to 2200-01-01T00:00:00Z exclusive"
)
TIMESTAMP_PATTERN = (
    "^(19[7-9][0-9]|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?"
    "([Zz]|[+-](0[0-9]|1[0-5]):[0-5][0-9])$"
)
"""Years 1970 to 2199 and offsets up to +-15:59, for the OpenAPI document: a necessary
condition only (1970-01-01T00:30:00+01:00 matches it, yet is before 1970 in UTC)."""
TIMESTAMP_SCHEMA: dict[str, Any] = {"format": "date-time", "pattern": TIMESTAMP_PATTERN}

_NUL_MSG = "must not contain a NUL character (U+0000)"
_SURROGATE_MSG = "must be valid Unicode (no lone surrogate)"
_RANGE_MSG = "must be from 1970-01-01T00:00:00Z inclusive to 2200-01-01T00:00:00Z exclusive"
_NAIVE_MSG = "must carry a UTC offset (Z or +-hh:mm)"


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    if NUL in text:
        return _NUL_MSG
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return _SURROGATE_MSG
    return None


def timestamp_problem(ts: datetime) -> str | None:
    """Why `ts` is outside the accepted range, or None (comparison only: never overflows)."""
    offset = ts.utcoffset()
    if offset is None:
        return _NAIVE_MSG
    if abs(offset) > MAX_UTC_OFFSET:
        return f"UTC offset must be within +-15:59, got {_offset_text(offset)}"
    if not MIN_TIMESTAMP <= ts < MAX_TIMESTAMP:
        return _RANGE_MSG
    return None


def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = int(abs(offset).total_seconds()) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class SubmittedFields(Protocol):
    """What the api decoded of one observation (`observation.SubmittedObservation`)."""

    @property
    def source(self) -> str: ...
    @property
    def snap(self) -> datetime: ...
    @property
    def observed_at(self) -> datetime: ...
    @property
    def observation_id(self) -> str | None: ...
    @property
    def attributes(self) -> Mapping[str, Any] | None: ...


class StoredFields(Protocol):
    """One observation as the ingestion log carries it (`observation.Observation`)."""

    @property
    def observation_id(self) -> str: ...
    @property
    def reference_data_id(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def snap(self) -> datetime: ...
    @property
    def value(self) -> float: ...
    @property
    def observed_at(self) -> datetime: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def attributes(self) -> Mapping[str, Any] | None: ...


def in_bounds(items: Sequence[SubmittedFields]) -> bool:
    """Fast check for the common case: every timestamp UTC and inside the range.

    A `False` only means "look closer" (`submission_problems`); text is not checked.
    """
    low, high, utc = MIN_TIMESTAMP, MAX_TIMESTAMP, UTC
    for item in items:
        snap = item.snap
        observed_at = item.observed_at
        if (
            snap.tzinfo is not utc
            or observed_at.tzinfo is not utc
            or not low <= snap < high
            or not low <= observed_at < high
        ):
            return False
    return True


def submitted_problems(item: SubmittedFields, *, text: bool = True) -> list[FieldError]:
    """Every bound one decoded observation breaks, `loc` relative to the item.

    `text=False` skips the string checks (the caller knows the body has no NUL escape).
    """
    errors: list[FieldError] = []
    for name in ("snap", "observed_at"):
        problem = timestamp_problem(getattr(item, name))
        if problem:
            errors.append(FieldError(loc=(name,), msg=problem))
    if text:
        for name in ("source", "observation_id"):
            value = getattr(item, name)
            problem = None if value is None else text_problem(value)
            if problem:
                errors.append(FieldError(loc=(name,), msg=problem))
        if item.attributes:
            errors += _attribute_errors(item.attributes)
    return errors


def _attribute_errors(attributes: Mapping[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    for key, value in attributes.items():
        problem = text_problem(key)
        if problem:
            errors.append(FieldError(loc=("attributes", key), msg=f"key {problem}"))
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                errors.append(FieldError(loc=("attributes", key), msg=problem))
    return errors


def submission_problems(items: Sequence[SubmittedFields], *, text: bool = True) -> list[FieldError]:
    """Every bound the decoded observations break, `loc` starting at `observations`."""
    if not text and in_bounds(items):
        return []
    return [
        FieldError(loc=("observations", index, *error.loc), msg=error.msg)
        for index, item in enumerate(items)
        for error in submitted_problems(item, text=text)
    ]


def observation_problems(observation: StoredFields) -> list[str]:
    """Why a stored observation (e.g. decoded from the ingestion log) cannot be processed.

    Empty when it is within every bound. Checks what the api checks, so a record that did
    not come through the api is judged by the same rules. Takes any object with the fields
    of `observation.Observation` (this module imports no other domain module).
    """
    problems: list[str] = []
    series = observation.reference_data_id
    if not isinstance(series, str) or not is_valid_series_id(series):
        problems.append(f"reference_data_id {series!r} does not match {SERIES_ID_PATTERN}")
    for name, limit in (
        ("observation_id", MAX_OBSERVATION_ID_LENGTH),
        ("source", MAX_SOURCE_LENGTH),
    ):
        problems += _text_field(name, getattr(observation, name), limit)
    for name in ("snap", "observed_at", "received_at"):
        ts = getattr(observation, name)
        problem = timestamp_problem(ts) if isinstance(ts, datetime) else "must be a timestamp"
        if problem:
            problems.append(f"{name} {problem}")
    value = observation.value
    if isinstance(value, bool) or not isinstance(value, float | int) or not math.isfinite(value):
        problems.append(f"value must be a finite number, got {value!r}")
    attributes = observation.attributes
    if attributes is not None:
        problems += _stored_attribute_problems(
            attributes, MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTE_STRING
        )
    return problems


def _text_field(name: str, value: object, max_length: int, min_length: int = 1) -> list[str]:
    if not isinstance(value, str):
        return [f"{name} must be a string, got {type(value).__name__}"]
    if not min_length <= len(value) <= max_length:
        return [f"{name} must be {min_length} to {max_length} characters"]
    problem = text_problem(value)
    return [f"{name} {problem}"] if problem else []


def _stored_attribute_problems(
    attributes: object, max_entries: int, max_key: int, max_string: int
) -> list[str]:
    if not isinstance(attributes, dict):
        return ["attributes must be an object"]
    problems: list[str] = []
    if len(attributes) > max_entries:
        problems.append(f"attributes must have at most {max_entries} entries")
    for key, value in attributes.items():
        problems += _text_field("attribute key", key, max_key)
        if isinstance(value, str):
            problems += [
                f"attribute {key!r}: {p.removeprefix('value ')}"
                for p in _text_field("value", value, max_string, min_length=0)
            ]
        elif isinstance(value, float | int) and not isinstance(value, bool):
            if not math.isfinite(value):
                problems.append(f"attribute {key!r} must be finite")
        elif value is not None and not isinstance(value, bool):
            problems.append(
                f"attribute {key!r} must be a string, number, boolean or null, "
                f"got {type(value).__name__}"
            )
    return problems
