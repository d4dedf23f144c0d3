"""Observations: what one source said about one series at one snap."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from app.domain.bounds import (
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTE_STRING,
    MAX_ATTRIBUTES,
    MAX_FLOAT,
    MAX_OBSERVATION_ID_LENGTH,
    MAX_SOURCE_LENGTH,
    NO_NUL_SCHEMA,
    SERIES_ID_PATTERN,
    TEXT_RULE,
    TIMESTAMP_RULE,
    TIMESTAMP_SCHEMA,
)

__all__ = [  # the sizes live in bounds.py; importers of this module still find them here
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_KEY",
    "MAX_ATTRIBUTE_STRING",
    "MAX_BATCH",
    "MAX_OBSERVATION_ID_LENGTH",
    "MAX_SOURCE_LENGTH",
    "SERIES_ID_PATTERN",
    "AwareDatetime",
    "FiniteFloat",
    "Observation",
    "ObservationSubmission",
    "ObservationsRecorded",
    "SourceName",
    "SubmittedObservation",
    "derive_observation_id",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

MAX_BATCH = 5000

SeriesId = Annotated[str, msgspec.Meta(pattern=SERIES_ID_PATTERN, description="series id")]
# The float range check also rejects NaN and +-infinity (1e999 decodes to inf). The bounds
# are exclusive: a number literal a hair beyond the largest double (more digits than a
# double holds, e.g. a 309-digit integer) rounds to it while decoding, so refusing the
# largest double itself is what makes "below 1.7976931348623157e308", as the OpenAPI
# document states, exact.
FiniteFloat = Annotated[float, msgspec.Meta(gt=-MAX_FLOAT, lt=MAX_FLOAT)]
# Only the offset's presence is checked while decoding; the range and the offset's size are
# checked after (app/domain/bounds.py): msgspec has no datetime bounds.
AwareDatetime = Annotated[
    datetime,
    msgspec.Meta(tz=True, description=TIMESTAMP_RULE, extra_json_schema=TIMESTAMP_SCHEMA),
]


def _text(min_length: int, max_length: int, what: str) -> Any:
    """A string type: length checked while decoding, NUL after (bounds.py), both documented."""
    return msgspec.Meta(
        min_length=min_length,
        max_length=max_length,
        description=f"{what}: {min_length} to {max_length} characters, {TEXT_RULE}",
        extra_json_schema=NO_NUL_SCHEMA,
    )


SourceName = Annotated[str, _text(1, MAX_SOURCE_LENGTH, "source name")]
ObservationKey = Annotated[str, _text(1, MAX_OBSERVATION_ID_LENGTH, "client observation id")]
AttributeValue = (
    Annotated[str, _text(0, MAX_ATTRIBUTE_STRING, "attribute value")] | FiniteFloat | bool | None
)
Attributes = Annotated[
    dict[Annotated[str, _text(1, MAX_ATTRIBUTE_KEY, "attribute name")], AttributeValue],
    msgspec.Meta(max_length=MAX_ATTRIBUTES),
]


class SubmittedObservation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One observation as posted by a source."""

    reference_data_id: SeriesId
    source: SourceName
    snap: AwareDatetime
    value: FiniteFloat
    observed_at: AwareDatetime
    observation_id: ObservationKey | None = None
    attributes: Attributes | None = None


class ObservationSubmission(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/observations` body."""

    observations: Annotated[
        list[SubmittedObservation], msgspec.Meta(min_length=1, max_length=MAX_BATCH)
    ]


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One stored observation; `received_at` is when the platform accepted it."""

    observation_id: str
    reference_data_id: str
    source: str
    snap: datetime
    value: float
    observed_at: datetime
    received_at: datetime
    attributes: dict[str, Any] | None = None


def derive_observation_id(
    reference_data_id: str,
    source: str,
    snap: datetime,
    value: float,
    observed_at: datetime,
    attributes: dict[str, Any] | None,
) -> str:
    """Deterministic content hash, so re-sending the same observation is idempotent.

    Timestamps are normalised to UTC microseconds and the value to its shortest repr, so
    `2026-01-15T14:00:00Z` and `2026-01-15T15:00:00+01:00` give the same id.
    """
    canonical = msgspec.json.encode(
        [
            reference_data_id,
            source,
            _utc_micros(snap),
            repr(float(value)),
            _utc_micros(observed_at),
            attributes or {},
        ],
        order="sorted",
    )
    return "h:" + hashlib.blake2b(canonical, digest_size=16).hexdigest()


def _utc_micros(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError("naive timestamp")
    return (ts - _EPOCH) // _MICROSECOND


OBSERVATIONS_SCHEMA_VERSION = 1
"""A record of one request's observations of one series, keyed by the series id."""

PARTITION_RECORD_SCHEMA_VERSION = 2
"""A record of one request's observations of every series of one partition, no key."""


MAX_OBSERVATIONS_PER_RECORD = 1000
"""Keeps one record far below the broker's 1 MB message limit (about 250 bytes each)."""

# The ingestion log record header naming who submitted its observations (the token's
# client id, `client/user` for a user): the worker's audit actor for what they change.
ACTOR_HEADER = "qis-actor"


class ObservationsRecorded(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """The ingestion log's record: observations of one request, already accepted.

    Version 1 holds one series (`reference_data_id`, also the record key). Version 2, what
    the api produces, holds the request's observations of all the series that map to one
    partition (`reference_data_id` None, no key): a batch of 100 series is about 12
    records instead of 100. Either way a series always lands on the partition its id
    maps to, so its observations stay in order.
    """

    schema_version: int
    observations: list[Observation]
    reference_data_id: str | None = None
