"""Series descriptors: read through the query cache, replace audited (docs/descriptors.md).

The descriptor lives in the document store, its audit record in PostgreSQL's trail: two
stores, no shared transaction. A replacement orders the two writes so that every change
that is audited is stored and no change is stored without its audit record committing:

1. In one PostgreSQL transaction: lock the series (it must exist) and read the stored
   descriptor.
2. Still inside it, write the document, conditional on the revision read in 1 (so a
   concurrent writer cannot be overwritten unseen). If that write fails, the transaction
   rolls back: nothing is stored, nothing audited.
3. Open the journal and append the audit record (before, after, revision), then commit.
   If either fails, the document write is undone (`DescriptorStore.restore`, conditional
   on the new revision) and the error raised.

The series lock is held from 1 to 3, so changes of one series are serialised and audited
in the order they are stored. The journal lock, which every writer's commit waits for,
is only taken in 3, never across a round trip to the document store. What remains is the
moment between 2 and 3: a reader may see the new document a few milliseconds before its audit record
commits; if the commit fails and the undo fails too (both stores down at once), the
document keeps a change without an audit record (logged as an error naming the series
and revision); and a commit whose outcome is unknown (connection lost during COMMIT)
counts as failed, so should it have gone through, the trail holds a revision the store
was put back from (logged as a warning; the client's retry stores it again).

Reads go through the query cache (`TwoLevelCache`) as scoped entries of the scope
`descriptor/<id>`: a replacement calls `changed()`, which drops the entry from this
process' L1 and starts a new L2 generation before the PUT answers (so a load that read
the old document before cannot serve it from L2 afterwards); other api processes keep
their L1 copy at most `descriptor_l1_ttl_seconds`.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from app.domain.descriptor import Descriptor, StoredDescriptor, descriptor_problems
from app.domain.errors import DomainError, FieldError
from app.ports import AuditEntry, DescriptorStore, PipelineDatabase
from app.services.cache import ABSENT, CachePolicy, Lookup, TwoLevelCache
from app.services.journal import json_native, write_journal

_log = logging.getLogger("qis.descriptors")
_encode = msgspec.json.Encoder()


class InvalidDescriptor(DomainError):
    """A descriptor broke rules across its fields; each is listed in `errors`."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))


class UnknownSeries(DomainError):
    """The series is not configured: it cannot carry a descriptor."""


class DescriptorConflict(DomainError):
    """The stored descriptor changed outside the series lock (another writer of the
    document store): nothing was written."""


def descriptor_scope(reference_data_id: str) -> str:
    """The cache scope of a series' descriptor."""
    return f"descriptor/{reference_data_id}"


def descriptor_key(reference_data_id: str) -> str:
    """L1/L2 key of a series' descriptor (the braces are a Redis Cluster hash tag)."""
    return f"descriptor:{{{reference_data_id}}}"


def descriptor_state(stored: StoredDescriptor | None) -> dict[str, Any] | None:
    """What the audit trail records of a descriptor: its revision and content."""
    if stored is None:
        return None
    return {"revision": stored.revision, "descriptor": json_native(stored.descriptor)}


class Descriptors:
    """The descriptor use cases of the api: read (cached) and replace (audited)."""

    def __init__(
        self,
        store: DescriptorStore,
        db: PipelineDatabase,
        cache: TwoLevelCache,
        policy: CachePolicy,
    ) -> None:
        self._store = store
        self._db = db
        self._cache = cache
        self._policy = policy

    async def get(self, reference_data_id: str) -> bytes:
        """The stored descriptor as JSON bytes, or `ABSENT` when the series has none."""
        p = self._policy
        lookup = Lookup(
            descriptor_key(reference_data_id),
            p.descriptor_l1_ttl_seconds,
            p.descriptor_ttl_seconds,
            series=descriptor_scope(reference_data_id),
            scoped=True,
            absent_l1_ttl=min(p.descriptor_l1_ttl_seconds, p.absent_ttl_seconds),
            absent_l2_ttl=p.absent_ttl_seconds,
            replica_reads=False,  # the document store's primary: no lag to guard against
        )

        async def load() -> bytes:
            stored = await self._store.get(reference_data_id)
            return ABSENT if stored is None else _encode.encode(stored)

        return await self._cache.get_or_load(lookup, load)

    async def put(
        self, reference_data_id: str, descriptor: Descriptor, *, actor: str
    ) -> StoredDescriptor:
        """Replace the series' descriptor, audited; re-sending the stored one changes
        nothing (no new revision, no audit record). Raises InvalidDescriptor,
        UnknownSeries or DescriptorConflict."""
        problems = descriptor_problems(descriptor)
        if problems:
            raise InvalidDescriptor(problems)
        before: StoredDescriptor | None = None
        after: StoredDescriptor | None = None
        try:
            async with self._db.transaction() as tx:
                await tx.lock_series([reference_data_id])
                if reference_data_id not in await tx.series([reference_data_id]):
                    raise UnknownSeries(reference_data_id)
                before = await self._store.get(reference_data_id)
                if before is not None and before.descriptor == descriptor:
                    return before
                revision = 0 if before is None else before.revision
                candidate = StoredDescriptor(
                    reference_data_id=reference_data_id,
                    revision=revision + 1,
                    updated_at=await tx.clock(),
                    descriptor=descriptor,
                )
                if not await self._store.put(candidate, revision):
                    raise DescriptorConflict(reference_data_id)
                after = candidate
                # The journal lock serialises every writer's commit: it is taken after
                # the document store's round trip, never held across it.
                at = await tx.open_journal()
                entry = AuditEntry(
                    actor=actor,
                    action="descriptor.created" if before is None else "descriptor.replaced",
                    entity_type="descriptor",
                    entity_id=reference_data_id,
                    before=descriptor_state(before),
                    after=descriptor_state(candidate),
                )
                await write_journal(tx, at, [entry], [])
        except BaseException:
            if after is not None:  # stored, but the audit record did not commit
                await self._undo(before, after)
            raise
        await self._cache.changed(descriptor_scope(reference_data_id))
        return after

    async def _undo(self, before: StoredDescriptor | None, after: StoredDescriptor) -> None:
        try:
            await self._store.restore(before, after.revision, after.reference_data_id)
        except Exception:
            _log.error(
                "descriptor stored without its audit record; restore it from the audit trail",
                extra={"series": after.reference_data_id, "revision": after.revision},
                exc_info=True,
            )
        else:
            _log.warning(
                "descriptor write undone: its audit record did not commit",
                extra={"series": after.reference_data_id, "revision": after.revision},
            )
