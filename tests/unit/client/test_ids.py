"""The client derives the ids the server derives, from what the server will decode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from qis_client import SubmittedObservation, batches, derive_observation_id, observation_id

from app.domain.observation import ObservationSubmission as ServerSubmission
from app.domain.observation import derive_observation_id as server_derive

_server = msgspec.json.Decoder(ServerSubmission)

offsets = st.integers(min_value=-(15 * 60 + 59), max_value=15 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2199, 1, 1), timezones=offsets
)
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=20,
)
# What the api accepts: finite, strictly inside the largest double (app/domain/observation.py).
finite = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda v: abs(v) < 1.7976931348623157e308
)
values = st.one_of(
    finite,
    st.integers(min_value=-(10**20), max_value=10**20),
)
attribute_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**15), max_value=10**15),
    finite,
    st.text(max_size=10).filter(lambda s: "\x00" not in s),
)
observations = st.builds(
    SubmittedObservation,
    reference_data_id=st.from_regex(r"\A[A-Z0-9][A-Z0-9._:-]{0,20}\Z"),
    source=text,
    snap=instants,
    value=values,
    observed_at=instants,
    attributes=st.none() | st.dictionaries(text, attribute_values, max_size=5),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(observations, min_size=1, max_size=5))
def test_client_ids_are_the_ids_the_server_derives_from_the_posted_body(
    items: list[SubmittedObservation],
) -> None:
    (batch,) = batches(items, 5000, 2 * 1024 * 1024)
    decoded = _server.decode(batch.body).observations
    server_ids = [
        server_derive(o.reference_data_id, o.source, o.snap, o.value, o.observed_at, o.attributes)
        for o in decoded
    ]
    assert batch.observation_ids == server_ids
    assert [observation_id(o) for o in items] == server_ids


def test_the_same_instant_in_any_offset_and_an_int_value_give_one_id() -> None:
    utc = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    a = derive_observation_id("EURUSD", "bbg", utc, 1, utc, {"n": 3})
    b = derive_observation_id("EURUSD", "bbg", paris, 1.0, paris, {"n": 3.0})
    assert a == b
    assert a == server_derive("EURUSD", "bbg", utc, 1.0, utc, {"n": 3.0})
    assert a.startswith("h:")
    assert len(a) == 2 + 32
    assert a != derive_observation_id("EURUSD", "bbg", utc, 1.0000001, utc, {"n": 3.0})


def test_an_explicit_observation_id_is_kept() -> None:
    now = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
    item = SubmittedObservation(
        reference_data_id="X", source="s", snap=now, value=1.0, observed_at=now, observation_id="k1"
    )
    assert observation_id(item) == "k1"
