"""The descriptor use cases over in-memory ports: the order of the document write and its
audit record when either store fails, conditional writes, and the cache invalidation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest

from app.domain.descriptor import Descriptor, Instrument, StoredDescriptor, Venue
from app.domain.series import Series, SeriesConfig
from app.ports import DescriptorStoreUnavailable
from app.services.cache import CachePolicy, TwoLevelCache
from app.services.descriptors import (
    DescriptorConflict,
    Descriptors,
    InvalidDescriptor,
    UnknownSeries,
    descriptor_key,
)
from tests.unit.services.cache_fakes import Clock, MemoryLocalCache, MemorySharedCache
from tests.unit.services.fakes import FakeDatabase, FakeStore, RecordingMetrics

SERIES = "EURUSD"


class MemoryDescriptors:
    """`DescriptorStore` with switches: `fail_put` (unreachable), `fail_restore`, and
    `meddle` (another writer changes the revision between the read and the write)."""

    def __init__(self) -> None:
        self.documents: dict[str, StoredDescriptor] = {}
        self.fail_put = False
        self.fail_restore = False
        self.meddle = False
        self.gets = 0

    async def get(self, reference_data_id: str) -> StoredDescriptor | None:
        self.gets += 1
        return self.documents.get(reference_data_id)

    async def put(self, stored: StoredDescriptor, previous_revision: int) -> bool:
        if self.fail_put:
            raise DescriptorStoreUnavailable("down")
        if self.meddle:
            theirs = self.documents[stored.reference_data_id]
            self.documents[stored.reference_data_id] = msgspec.structs.replace(
                theirs, revision=theirs.revision + 10
            )
        current = self.documents.get(stored.reference_data_id)
        if (0 if current is None else current.revision) != previous_revision:
            return False
        self.documents[stored.reference_data_id] = stored
        return True

    async def restore(self, previous: StoredDescriptor | None, revision: int, series: str) -> None:
        if self.fail_restore:
            raise DescriptorStoreUnavailable("down")
        current = self.documents.get(series)
        if current is None or current.revision != revision:
            return
        if previous is None:
            del self.documents[series]
        else:
            self.documents[series] = previous

    async def with_vendor_symbol(self, vendor: str, symbol: str) -> list[str]:
        return []


class FailingCommit(FakeDatabase):
    """A database whose commit fails (after the transaction's body ran) when `fail`."""

    fail = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeStore]:
        async with super().transaction() as store:
            yield store
            if self.fail:
                raise ConnectionResetError("connection lost at commit")


def doc(name: str = "Euro / US dollar") -> Descriptor:
    return Descriptor(instrument=Instrument(asset_class="fx", name=name, currency="EUR"))


@pytest.fixture
def db() -> FailingCommit:
    database = FailingCommit()
    database.state.series[SERIES] = Series(
        reference_data_id=SERIES, config=SeriesConfig(), updated_at=database.state.now
    )
    return database


@pytest.fixture
def store() -> MemoryDescriptors:
    return MemoryDescriptors()


@pytest.fixture
def l2() -> MemorySharedCache:
    return MemorySharedCache()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(
    db: FailingCommit, store: MemoryDescriptors, l2: MemorySharedCache, clock: Clock
) -> Descriptors:
    cache = TwoLevelCache(MemoryLocalCache(clock), l2, CachePolicy(), RecordingMetrics(), clock)
    cache.connected()
    clock.advance(0.001)
    return Descriptors(store, db, cache, CachePolicy())


async def test_a_change_is_stored_with_its_audit_record(
    service: Descriptors, db: FailingCommit, store: MemoryDescriptors
) -> None:
    first = await service.put(SERIES, doc(), actor="admin")
    assert (first.revision, first.updated_at) == (1, db.state.now)
    again = await service.put(SERIES, doc(), actor="admin")
    assert again == first  # nothing changed: no revision, no record
    second = await service.put(SERIES, doc("EUR/USD"), actor="admin")
    assert second.revision == 2
    assert store.documents[SERIES] == second
    assert db.actions() == ["descriptor.created", "descriptor.replaced"]
    record = db.state.audit[1]
    assert (record.entity_type, record.entity_id, record.actor) == ("descriptor", SERIES, "admin")
    assert record.before is not None
    assert record.after is not None
    assert record.before["revision"] == 1
    assert record.after["descriptor"]["instrument"]["name"] == "EUR/USD"


async def test_a_failed_document_write_leaves_no_audit_record(
    service: Descriptors, db: FailingCommit, store: MemoryDescriptors
) -> None:
    store.fail_put = True
    with pytest.raises(DescriptorStoreUnavailable):
        await service.put(SERIES, doc(), actor="admin")
    assert db.actions() == []
    assert store.documents == {}


async def test_a_failed_commit_undoes_the_document_write(
    service: Descriptors, db: FailingCommit, store: MemoryDescriptors
) -> None:
    first = await service.put(SERIES, doc(), actor="admin")
    db.fail = True
    with pytest.raises(ConnectionResetError):
        await service.put(SERIES, doc("EUR/USD"), actor="admin")
    assert store.documents[SERIES] == first  # the audited state, not the unaudited one
    assert db.actions() == ["descriptor.created"]

    # A first document whose record did not commit is deleted again.
    db.state.series["GBPUSD"] = msgspec.structs.replace(
        db.state.series[SERIES], reference_data_id="GBPUSD"
    )
    with pytest.raises(ConnectionResetError):
        await service.put("GBPUSD", doc(), actor="admin")
    assert "GBPUSD" not in store.documents


async def test_a_failed_undo_is_logged_with_the_series(
    service: Descriptors,
    db: FailingCommit,
    store: MemoryDescriptors,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db.fail = True
    store.fail_restore = True
    with pytest.raises(ConnectionResetError):
        await service.put(SERIES, doc(), actor="admin")
    (record,) = [r for r in caplog.records if r.name == "qis.descriptors"]
    assert record.levelname == "ERROR"
    assert "without its audit record" in record.getMessage()
    assert (record.__dict__["series"], record.__dict__["revision"]) == (SERIES, 1)


async def test_a_concurrent_writer_is_a_conflict_without_record(
    service: Descriptors, db: FailingCommit, store: MemoryDescriptors
) -> None:
    await service.put(SERIES, doc(), actor="admin")
    store.meddle = True
    with pytest.raises(DescriptorConflict):
        await service.put(SERIES, doc("EUR/USD"), actor="admin")
    assert db.actions() == ["descriptor.created"]
    assert store.documents[SERIES].revision == 11  # the other writer's, untouched


async def test_rules_and_unknown_series_are_refused_before_any_write(
    service: Descriptors, db: FailingCommit, store: MemoryDescriptors
) -> None:
    venue = Venue(mic="XLON", name="London", timezone="Europe/London", primary=True)
    with pytest.raises(InvalidDescriptor) as refused:
        await service.put(SERIES, msgspec.structs.replace(doc(), venues=[venue, venue]), actor="a")
    assert [e.loc for e in refused.value.errors] == [("venues", 1, "mic"), ("venues",)]
    with pytest.raises(UnknownSeries):
        await service.put("NOSUCH", doc(), actor="admin")
    assert store.documents == {}
    assert db.actions() == []


async def test_reads_are_cached_and_a_put_starts_a_new_generation(
    service: Descriptors, store: MemoryDescriptors, l2: MemorySharedCache, clock: Clock
) -> None:
    await service.put(SERIES, doc(), actor="admin")
    clock.advance(0.001)
    first = await service.get(SERIES)
    assert await service.get(SERIES) == first
    assert store.gets == 2  # the put's read, then one load: the second get was a hit
    assert any(k.startswith(descriptor_key(SERIES)) for k in l2.values)

    await service.put(SERIES, doc("EUR/USD"), actor="admin")
    clock.advance(0.001)
    fresh = await service.get(SERIES)
    assert b'"EUR/USD"' in fresh
    assert b'"revision":2' in fresh


async def test_no_descriptor_is_absent(service: Descriptors) -> None:
    assert await service.get(SERIES) == b""
