"""Observation ids, derived from the content exactly as the server derives them.

An observation posted without `observation_id` gets `h:` + blake2b-128 of the canonical
JSON of `[reference_data_id, source, snap, repr(value), observed_at, attributes]`
(timestamps as UTC microseconds since the epoch, keys sorted). The server decodes the
body first, so the client hashes what the server will see: the value and number
attributes as floats, timestamps as instants. The same content always has the same id,
which is what makes a re-sent batch idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import msgspec

from qis_client.models import AttributeValue, SubmittedObservation

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_encoder = msgspec.json.Encoder(order="sorted")


def derive_observation_id(
    reference_data_id: str,
    source: str,
    snap: datetime,
    value: float,
    observed_at: datetime,
    attributes: Mapping[str, AttributeValue] | None,
) -> str:
    """The id the server gives an observation posted without `observation_id`."""
    canonical = _encoder.encode(
        [
            reference_data_id,
            source,
            _utc_micros(snap),
            repr(float(value)),
            _utc_micros(observed_at),
            _as_decoded(attributes),
        ]
    )
    return "h:" + hashlib.blake2b(canonical, digest_size=16).hexdigest()


def observation_id(observation: SubmittedObservation) -> str:
    """The observation's own id if it has one, else the derived one (as the server does)."""
    return observation.observation_id or derive_observation_id(
        observation.reference_data_id,
        observation.source,
        observation.snap,
        observation.value,
        observation.observed_at,
        observation.attributes,
    )


def _as_decoded(attributes: Mapping[str, AttributeValue] | None) -> dict[str, AttributeValue]:
    # The server declares number attributes as floats: an int sent as 3 is hashed as 3.0.
    if not attributes:
        return {}
    return {
        key: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for key, v in attributes.items()
    }


def _utc_micros(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError("naive timestamp: observations need a time zone")
    return (ts - _EPOCH) // _MICROSECOND
