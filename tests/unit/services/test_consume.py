"""The consume service over in-memory ports: exactly-once batches, fencing, rewind, and
the isolation of records that fail (see app/services/consume.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import pytest

from app.domain.observation import Observation
from app.ports import LogRecord, PartitionFenced, PipelineStore
from app.services.consume import AfterStore, Consumer, RetryPolicy
from tests.unit.services.consume_fakes import FakeBatchStore, FakeSink, FakeSource, record


class DomainBug(TypeError):
    pass


def consumer(
    store: FakeBatchStore,
    source: FakeSource,
    sink: FakeSink,
    *,
    poison_source: str = "poison",
    attempts: int = 3,
    max_batch_records: int = 5000,
    max_transaction_observations: int = 5000,
    recorded: list[tuple[list[str], str]] | None = None,
    hook: AfterStore | None = None,
) -> Consumer:
    async def after_store(
        _: PipelineStore, new: Sequence[Observation], __: Collection[str], ___: object
    ) -> None:
        if any(o.source == poison_source for o in new):
            raise DomainBug("cannot compare")

    async def on_set_aside(
        _: PipelineStore, observations: Sequence[Observation], error: str
    ) -> None:
        if recorded is not None:
            recorded.append(([o.source for o in observations], error))

    return Consumer(
        topic="qis.observations.v1",
        owner="me",
        store=store,
        source=source,
        dead_letters=sink,
        transient=lambda exc: isinstance(exc, OSError),
        after_store=hook or after_store,
        on_set_aside=on_set_aside,
        retry=RetryPolicy(attempts=attempts, initial=0.001, longest=0.002),
        max_batch_records=max_batch_records,
        max_transaction_observations=max_transaction_observations,
    )


def polled(source: FakeSource) -> dict[int, list[LogRecord]]:
    return asyncio.run(source.poll(10_000, 0))


def sources(store: FakeBatchStore) -> list[str]:
    return sorted(o.source for o in store.state.observations.values())


def test_a_clean_batch_commits_once_with_its_positions() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    source = FakeSource(
        {0: [record(0, i, "A", f"s{i}") for i in range(5)], 1: [record(1, 0, "B", "x")]}
    )
    c = consumer(store, source, sink)
    asyncio.run(c.assigned([0, 1]))

    asyncio.run(c.process(polled(source)))

    assert sources(store) == ["s0", "s1", "s2", "s3", "s4", "x"]
    assert (store.position(0), store.position(1)) == (5, 1)
    assert c.counters.transactions == 1
    assert sink.letters == []


def test_an_observation_repeated_in_a_batch_is_stored_reconciled_and_counted_once() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    seen: list[list[str]] = []

    async def after_store(
        _: PipelineStore, new: Sequence[Observation], __: Collection[str], ___: object
    ) -> None:
        seen.append(sorted(o.source for o in new))

    # a record, then the same record again (a replay, a retried request) in one batch
    source = FakeSource({0: [record(0, 0, "A", "s0", "s1"), record(0, 1, "A", "s0", "s1")]})
    c = consumer(store, source, sink, hook=after_store)
    asyncio.run(c.assigned([0]))

    asyncio.run(c.process(polled(source)))

    assert seen == [["s0", "s1"]]
    assert c.counters.stored == 2
    assert sources(store) == ["s0", "s1"]
    assert store.position(0) == 2


@pytest.mark.parametrize("poisoned_at", [0, 7, 15, 31])
def test_one_poison_record_is_isolated_and_everything_else_commits(poisoned_at: int) -> None:
    store, sink = FakeBatchStore(), FakeSink()
    records = [
        record(0, i, "A", "poison" if i == poisoned_at else f"s{i}", "other") for i in range(32)
    ]
    source = FakeSource({0: records})
    recorded: list[tuple[list[str], str]] = []
    c = consumer(store, source, sink, recorded=recorded)
    asyncio.run(c.assigned([0]))

    asyncio.run(c.process(polled(source)))

    (letter,) = sink.letters
    assert (letter.stage, letter.origin_partition, letter.origin_offset) == (
        "reconcile",
        0,
        poisoned_at,
    )
    assert letter.value == records[poisoned_at].value
    assert "DomainBug: cannot compare" in letter.error
    # every other record's observations, none of the poisoned record's (not even "other")
    stored = sources(store)
    assert "poison" not in stored
    assert len(stored) == 31 + 1  # s_i of 31 records + one "other" (same id in every record)
    assert store.position(0) == 32
    assert recorded == [(["poison", "other"], "DomainBug: cannot compare")]
    # bisection: about 2 log2(32) transactions, not one per record
    assert c.counters.transactions <= 2 * 5 + 2


def test_two_poison_records_in_different_partitions_are_both_isolated() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    source = FakeSource(
        {
            0: [record(0, i, "A", "poison" if i == 3 else f"a{i}") for i in range(8)],
            1: [record(1, i, "B", "poison" if i == 6 else f"b{i}") for i in range(8)],
        }
    )
    c = consumer(store, source, sink)
    asyncio.run(c.assigned([0, 1]))

    asyncio.run(c.process(polled(source)))

    assert sorted((d.origin_partition, d.origin_offset) for d in sink.letters) == [(0, 3), (1, 6)]
    assert len(store.state.observations) == 14
    assert (store.position(0), store.position(1)) == (8, 8)


def test_a_value_the_store_refuses_is_dead_lettered_at_the_store_stage() -> None:
    store, sink = FakeBatchStore(), FakeSink()

    def refuse(step: str, argument: object) -> BaseException | None:
        if step == "store" and any(o.source == "nul" for o in argument):  # type: ignore[attr-defined]
            return ValueError("invalid byte sequence for encoding UTF8: 0x00")
        return None

    store.fail.when = refuse
    source = FakeSource({0: [record(0, i, "A", "nul" if i == 2 else f"s{i}") for i in range(4)]})
    c = consumer(store, source, sink)
    asyncio.run(c.assigned([0]))

    asyncio.run(c.process(polled(source)))

    (letter,) = sink.letters
    assert (letter.stage, letter.origin_offset) == ("store", 2)
    assert sources(store) == ["s0", "s1", "s3"]
    assert store.position(0) == 4


def test_undecodable_records_are_dead_lettered_at_decoding_and_the_rest_commits() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    bad = LogRecord(topic="qis.observations.v1", partition=0, offset=1, key=b"A", value=b"{")
    source = FakeSource({0: [record(0, 0, "A", "s0"), bad, record(0, 2, "A", "s2")]})
    c = consumer(store, source, sink)
    asyncio.run(c.assigned([0]))

    asyncio.run(c.process(polled(source)))

    (letter,) = sink.letters
    assert (letter.stage, letter.origin_offset) == ("decode", 1)
    assert letter.error.startswith("DecodeError")
    assert sources(store) == ["s0", "s2"]
    assert c.counters.transactions == 1  # no bisection needed
    assert store.position(0) == 3


def test_a_transient_failure_is_retried_in_place_and_nothing_is_set_aside() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    failures = [OSError("connection reset")]
    store.fail.when = lambda step, _: failures.pop() if step == "store" and failures else None
    source = FakeSource({0: [record(0, i, "A", f"s{i}") for i in range(3)]})
    c = consumer(store, source, sink)
    asyncio.run(c.assigned([0]))

    asyncio.run(c.process(polled(source)))

    assert sources(store) == ["s0", "s1", "s2"]
    assert sink.letters == []
    assert c.counters.retries == 1
    assert store.position(0) == 3


def test_a_lasting_transient_failure_rewinds_to_the_stored_positions_and_loses_nothing() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    outage = {"left": 5}  # more failures than attempts in place

    def down(step: str, _: object) -> BaseException | None:
        if step == "store" and outage["left"]:
            outage["left"] -= 1
            return OSError("database unavailable")
        return None

    store.fail.when = down
    source = FakeSource({0: [record(0, i, "A", f"s{i}") for i in range(3)]})
    c = consumer(store, source, sink, attempts=2)

    async def run() -> None:
        await c.assigned([0])
        stop = asyncio.Event()
        task = asyncio.create_task(c.run(stop))
        async with asyncio.timeout(10):
            while store.position(0) < 3:
                await asyncio.sleep(0.001)
        stop.set()
        await task

    asyncio.run(run())

    assert sources(store) == ["s0", "s1", "s2"]  # each stored once
    assert sink.letters == []
    assert (0, 0) in source.seeks[1:]  # rewound to the stored position, not skipped
    assert store.commits >= 1


def test_a_fenced_batch_commits_nothing_and_the_new_owner_reads_it() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    source = FakeSource({0: [record(0, i, "A", f"s{i}") for i in range(3)]})
    old = consumer(store, source, sink)
    asyncio.run(old.assigned([0]))
    batch = polled(source)
    asyncio.run(store.claim([0], "someone else"))  # a rebalance gave the partition away

    with pytest.raises(PartitionFenced):
        asyncio.run(old.process(batch))

    assert store.state.observations == {}
    assert store.position(0) == 0


def test_a_rebalance_during_bisection_fences_the_rest_of_the_batch() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    source = FakeSource({0: [record(0, i, "A", "poison" if i == 6 else f"s{i}") for i in range(8)]})
    c = consumer(store, source, sink)
    asyncio.run(c.assigned([0]))

    def rebalance() -> None:
        # Once the first half has committed, another member claims the partition: the
        # rest of the old pass, still fenced with the old epoch, must not commit.
        if store.position(0) == 4:
            next_offset, _, epoch = store.state.rows[0]
            store.state.rows[0] = (next_offset, "someone else", epoch + 1)  # what claim does

    store.after_commit = rebalance

    with pytest.raises(PartitionFenced):
        asyncio.run(c.process(polled(source)))

    assert store.position(0) == 4  # the first half, committed before the rebalance
    assert sources(store) == ["s0", "s1", "s2", "s3"]


def test_a_batch_is_stored_in_transactions_bounded_by_observations() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    # Partition 0: records of 3, 3, 3 observations; partition 1: one record of 7 (more than
    # the bound: a transaction of its own), then one of 1.
    source = FakeSource(
        {
            0: [record(0, i, "A", *(f"a{i}{j}" for j in range(3))) for i in range(3)],
            1: [record(1, 0, "B", *(f"b{j}" for j in range(7))), record(1, 1, "C", "c")],
        }
    )
    seen: list[int] = []
    store.after_commit = lambda: seen.append(len(store.state.observations))
    c = consumer(store, source, sink, max_transaction_observations=5)
    asyncio.run(c.assigned([0, 1]))

    asyncio.run(c.process(polled(source)))

    # [3] [3] [3] [7] [1]: a run closes before the unit that would pass 5.
    assert seen == [3, 6, 9, 16, 17]
    assert c.counters.transactions == 5
    assert (store.position(0), store.position(1)) == (3, 2)
    assert c.counters.stored == 17


def test_a_failure_after_the_first_transaction_keeps_what_it_committed() -> None:
    store, sink = FakeBatchStore(), FakeSink()
    source = FakeSource({0: [record(0, i, "A", f"s{i}", f"t{i}") for i in range(4)]})
    # The second transaction (records 2 and 3) cannot store while the database is down.
    store.fail.when = lambda step, obs: (
        OSError("down") if step == "store" and "s2" in {o.source for o in obs} else None
    )
    c = consumer(store, source, sink, attempts=1, max_transaction_observations=4)
    asyncio.run(c.assigned([0]))

    with pytest.raises(OSError, match="down"):
        asyncio.run(c.process(polled(source)))

    assert sources(store) == ["s0", "s1", "t0", "t1"]
    assert store.position(0) == 2
