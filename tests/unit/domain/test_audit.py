from __future__ import annotations

import hashlib
import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from app.domain.audit import GENESIS_HASH, AuditRecord, audit_record, chain_hash, verify_chain

from .builders import SNAP


def chain(length: int) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    prev = GENESIS_HASH
    for i in range(length):
        record = audit_record(
            prev,
            actor="worker",
            action="official_value.created",
            entity_type="official_value",
            entity_id=f"ETH-USD|2026-01-15T14:00:00Z|v{i + 1}",
            before=None if i == 0 else {"version": i},
            after={"version": i + 1, "value": 100.0 + i},
            at=SNAP + timedelta(seconds=i),
        )
        records.append(record)
        prev = record.hash
    return records


def test_an_intact_chain_verifies() -> None:
    records = chain(5)

    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert verify_chain(records) is None
    assert verify_chain([]) is None


def test_hash_is_sha256_hex_of_the_content() -> None:
    digest = chain_hash(
        GENESIS_HASH, "api", "series.configured", "series", "ETH-USD", None, {}, SNAP
    )

    # Pinned to the documented canonical form: a change would break every stored chain.
    canonical = (
        b'{"action":"series.configured","actor":"api","after":{},"at":1768485600000000,'
        b'"before":null,"entity_id":"ETH-USD","entity_type":"series","prev_hash":"'
        + GENESIS_HASH.encode()
        + b'"}'
    )
    assert digest == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", "mallory"),
        ("action", "official_value.deleted"),
        ("entity_type", "series"),
        ("entity_id", "BTC-USD"),
        ("before", {"version": 99}),
        ("after", {"version": 3, "value": 1e9}),
        ("at", SNAP - timedelta(days=1)),
    ],
)
def test_tampering_with_any_field_is_detected_at_that_record(field: str, value: Any) -> None:
    records = chain(5)
    records[2] = msgspec.structs.replace(records[2], **{field: value})

    assert verify_chain(records) == 2


def test_rehashing_a_tampered_record_breaks_the_next_link() -> None:
    records = chain(5)
    forged = msgspec.structs.replace(records[2], after={"version": 3, "value": -1.0})
    records[2] = msgspec.structs.replace(
        forged,
        hash=chain_hash(
            forged.prev_hash,
            forged.actor,
            forged.action,
            forged.entity_type,
            forged.entity_id,
            forged.before,
            forged.after,
            forged.at,
        ),
    )

    assert verify_chain(records) == 3


def test_a_deleted_record_is_detected_where_it_was() -> None:
    records = chain(5)
    del records[1]

    assert verify_chain(records) == 1


def test_swapped_records_are_detected() -> None:
    records = chain(4)
    records[1], records[2] = records[2], records[1]

    assert verify_chain(records) == 1


def test_a_chain_not_starting_at_genesis_is_broken_at_0_unless_anchored() -> None:
    tail = chain(5)[2:]

    assert verify_chain(tail) == 0
    assert verify_chain(tail, start_hash=chain(5)[1].hash) is None


def test_hash_does_not_depend_on_key_order_time_zone_or_seq() -> None:
    paris = timezone(timedelta(hours=1))
    a = chain_hash("p", "u", "a", "t", "i", {"x": 1, "y": {"b": 2, "a": 1}}, None, SNAP)
    b = chain_hash(
        "p", "u", "a", "t", "i", {"y": {"a": 1, "b": 2}, "x": 1}, None, SNAP.astimezone(paris)
    )
    record = chain(1)[0]

    assert a == b
    assert verify_chain([msgspec.structs.replace(record, seq=42)]) is None


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        chain_hash(GENESIS_HASH, "u", "a", "t", "i", None, None, datetime(2026, 1, 15))
