"""The ingestion log's two record versions, as the worker reads them."""

from __future__ import annotations

import msgspec
import pytest

from app.domain.observation import (
    OBSERVATIONS_SCHEMA_VERSION,
    PARTITION_RECORD_SCHEMA_VERSION,
    ObservationsRecorded,
)
from app.ports import LogRecord
from app.services.consume import decode_record
from tests.unit.services.consume_fakes import observation

_encode = msgspec.json.Encoder()


def _record(value: object, key: bytes | None = None) -> LogRecord:
    return LogRecord(
        topic="qis.observations.v1", partition=3, offset=7, key=key, value=_encode.encode(value)
    )


def test_a_version_2_record_holds_several_series_and_no_key() -> None:
    observations = [observation("A", "x"), observation("B", "x"), observation("A", "y")]
    record = _record(
        ObservationsRecorded(
            schema_version=PARTITION_RECORD_SCHEMA_VERSION, observations=observations
        )
    )

    decoded = decode_record(record)

    assert decoded.observations == observations
    assert decoded.reference_data_id is None
    top = msgspec.json.decode(record.value or b"", type=dict[str, object])
    assert sorted(top) == ["observations", "schema_version"]  # no series: omitted, not null


def test_a_version_1_record_still_reads_and_its_series_is_checked() -> None:
    one = ObservationsRecorded(
        schema_version=OBSERVATIONS_SCHEMA_VERSION,
        reference_data_id="A",
        observations=[observation("A", "x")],
    )
    assert decode_record(_record(one, key=b"A")).observations == one.observations

    mixed = msgspec.structs.replace(one, observations=[observation("B", "x")])
    with pytest.raises(ValueError, match="another series"):
        decode_record(_record(mixed, key=b"A"))
    with pytest.raises(ValueError, match="key does not match"):
        decode_record(_record(one, key=b"B"))


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            {"schema_version": 1, "observations": []},
            "a version 1 record names its reference_data_id",
        ),
        (
            {"schema_version": 2, "reference_data_id": "A", "observations": []},
            "a version 2 record holds several series",
        ),
        ({"schema_version": 3, "observations": []}, "unsupported schema_version 3"),
    ],
)
def test_a_record_that_breaks_its_version_is_refused(value: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        decode_record(_record(value))
