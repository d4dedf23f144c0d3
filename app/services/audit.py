"""Verifying the audit trail: recompute the chain, report the first broken link."""

from __future__ import annotations

from collections.abc import AsyncIterable

import msgspec

from app.domain.audit import GENESIS_HASH, AuditRecord, chain_hash, verify_chain

CHUNK = 1000


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of a verification; the `broken_*` fields describe the first bad record."""

    records: int
    broken_seq: int | None = None
    reason: str | None = None
    expected: str | None = None
    stored: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


async def verify_audit_trail(
    records: AsyncIterable[AuditRecord], *, start_hash: str = GENESIS_HASH
) -> Verification:
    """Check every link and hash, in order; stop at the first broken record.

    `start_hash` is what the first record must point to: the genesis hash for a whole
    trail, or the hash of the record just before a suffix being checked.
    """
    expected_prev = start_hash
    checked = 0
    chunk: list[AuditRecord] = []

    def check(batch: list[AuditRecord]) -> Verification | None:
        nonlocal expected_prev, checked
        index = verify_chain(batch, start_hash=expected_prev)
        if index is None:
            checked += len(batch)
            expected_prev = batch[-1].hash
            return None
        bad = batch[index]
        link = expected_prev if index == 0 else batch[index - 1].hash
        if bad.prev_hash != link:
            return Verification(
                records=checked + index,
                broken_seq=bad.seq,
                reason="prev_hash does not match the previous record's hash",
                expected=link,
                stored=bad.prev_hash,
            )
        return Verification(
            records=checked + index,
            broken_seq=bad.seq,
            reason="hash does not match the record's content",
            expected=chain_hash(
                bad.prev_hash,
                bad.actor,
                bad.action,
                bad.entity_type,
                bad.entity_id,
                bad.before,
                bad.after,
                bad.at,
            ),
            stored=bad.hash,
        )

    async for record in records:
        chunk.append(record)
        if len(chunk) >= CHUNK:
            failure = check(chunk)
            if failure is not None:
                return failure
            chunk = []
    if chunk:
        failure = check(chunk)
        if failure is not None:
            return failure
    return Verification(records=checked)
