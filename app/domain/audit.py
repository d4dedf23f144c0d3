"""Audit trail: append-only records, each chained to the previous one by a SHA-256 hash.

The hash covers the previous hash and every field of the record except `seq` (assigned
by the database) and the hash itself, encoded as canonical JSON (keys sorted, `at` as
integer microseconds since the epoch in UTC). `before` and `after` must therefore be
read back exactly as they were hashed: a store that rewrites numbers (e.g. `1e20` ->
`100000000000000000000`) breaks the chain, so keep them JSON-native and stable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from app.domain.observation import _utc_micros

GENESIS_HASH = "0" * 64


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One state change: who did what to which entity, with its state before and after."""

    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime
    prev_hash: str
    hash: str
    seq: int | None = None


def chain_hash(
    prev_hash: str,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    at: datetime,
) -> str:
    """SHA-256 (hex) of the previous hash and the record's content, canonically encoded."""
    canonical = msgspec.json.encode(
        {
            "prev_hash": prev_hash,
            "actor": actor,
            "action": action,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "before": before,
            "after": after,
            "at": _utc_micros(at),
        },
        order="sorted",
    )
    return hashlib.sha256(canonical).hexdigest()


def audit_record(
    prev_hash: str,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    at: datetime,
) -> AuditRecord:
    """A new record chained after the record whose hash is `prev_hash`."""
    return AuditRecord(
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        before=before,
        after=after,
        at=at,
        prev_hash=prev_hash,
        hash=chain_hash(prev_hash, actor, action, entity_type, entity_id, before, after, at),
    )


def verify_chain(records: Sequence[AuditRecord], *, start_hash: str = GENESIS_HASH) -> int | None:
    """Index of the first record whose link or hash is wrong, None when the chain is intact.

    `start_hash` is the hash the first record must point to: the genesis hash for a whole
    chain, or the last verified record's hash to check only what was appended since.
    """
    expected_prev = start_hash
    for index, record in enumerate(records):
        recomputed = chain_hash(
            record.prev_hash,
            record.actor,
            record.action,
            record.entity_type,
            record.entity_id,
            record.before,
            record.after,
            record.at,
        )
        if record.prev_hash != expected_prev or record.hash != recomputed:
            return index
        expected_prev = record.hash
    return None
