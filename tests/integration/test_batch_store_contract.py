"""One contract, two implementations: the in-memory `BatchStore` the consume service's unit
tests use, and the PostgreSQL one the worker runs on, must behave alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.adapters.postgres.pipeline import PostgresBatchStore
from app.domain.observation import Observation
from app.ports import BatchStore, PartitionFenced
from tests.conftest import unique_series
from tests.unit.services.consume_fakes import FakeBatchStore, observation

pytestmark = pytest.mark.integration


class Boom(RuntimeError):
    pass


@pytest.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest, pool: asyncpg.Pool) -> AsyncIterator[BatchStore]:
    if request.param == "memory":
        yield FakeBatchStore()
    else:
        yield PostgresBatchStore(pool, f"contract-{uuid.uuid4().hex[:8]}", "contract.topic")


def obs(series: str, source: str) -> Observation:
    return observation(series, source)


async def test_claiming_bumps_the_epoch_and_keeps_the_position(store: BatchStore) -> None:
    first = await store.claim([0, 3], "a")
    assert first == {0: (0, 1), 3: (0, 1)}
    async with store.transaction() as tx:
        await tx.lock_partitions([0])
        await tx.advance({0: (7, 1)}, "a")

    assert await store.claim([0], "b") == {0: (7, 2)}


async def test_a_stale_epoch_is_fenced_and_its_transaction_rolls_back(store: BatchStore) -> None:
    series = unique_series("C")
    await store.claim([0], "a")
    await store.claim([0], "b")  # "a" lost the partition

    async def stale_commit() -> None:
        async with store.transaction() as tx:
            await tx.lock_partitions([0])
            assert len(await tx.insert_observations([obs(series, "x")])) == 1
            await tx.advance({0: (5, 1)}, "a")

    with pytest.raises(PartitionFenced):
        await stale_commit()

    async with store.transaction() as tx:  # nothing of the fenced transaction stayed
        assert await tx.insert_observations([obs(series, "x")]) == [obs(series, "x").observation_id]
        await tx.advance({0: (5, 2)}, "b")
    assert await store.claim([0], "c") == {0: (5, 3)}


async def test_an_observation_is_stored_once(store: BatchStore) -> None:
    series = unique_series("C")
    await store.claim([1], "a")
    batch = [obs(series, "x"), obs(series, "y")]
    async with store.transaction() as tx:
        assert sorted(await tx.insert_observations(batch)) == sorted(
            o.observation_id for o in batch
        )
    async with store.transaction() as tx:
        assert await tx.insert_observations(batch) == []


async def test_a_transaction_that_raises_commits_nothing(store: BatchStore) -> None:
    series = unique_series("C")
    await store.claim([2], "a")

    async def failing() -> None:
        async with store.transaction() as tx:
            await tx.lock_partitions([2])
            await tx.insert_observations([obs(series, "x")])
            await tx.advance({2: (9, 1)}, "a")
            raise Boom

    with pytest.raises(Boom):
        await failing()

    async with store.transaction() as tx:
        assert len(await tx.insert_observations([obs(series, "x")])) == 1
    assert await store.claim([2], "a") == {2: (0, 2)}
