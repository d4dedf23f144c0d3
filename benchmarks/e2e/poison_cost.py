"""What a poison record costs the worker: records isolated per poison, and drain throughput.

The worker runs in this process against the local stack's PostgreSQL and Kafka, on a
topic, dead-letter topic and consumer group of its own per round. Each round produces
`--records` records (one series each of `--series`, three observations per record), with
`--poison` of them spread evenly through the topic carrying an observation from the
source `poison`, which the reconciliation stage is made to reject (as a domain bug
would); a clean round has none. Rounds alternate clean / poisoned; the figures are the
best of each side.

    .venv/bin/python -m benchmarks.e2e.poison_cost --records 20000 --poison 10 --rounds 3

Prints per round: drain seconds, records/s, dead letters, batch transactions attempted;
then the poisoned/clean throughput ratio and the records isolated per poison record.
Loopback only; bounded by --timeout per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from app.adapters.kafka import ensure_topics, new_consumer, new_producer
from app.adapters.postgres.pool import open_pool
from app.domain.observation import (
    OBSERVATIONS_SCHEMA_VERSION,
    Observation,
    ObservationsRecorded,
    derive_observation_id,
)
from app.entrypoints.worker import build_consumer, reconciling
from app.ports import PipelineStore
from app.settings import KafkaSettings, Settings, WorkerSettings, load_settings
from benchmarks.e2e.processes import own_database, prepare_stack

_encode = msgspec.json.Encoder()


def records(count: int, series: int, poison: int, run: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of `count` records; every `count // poison`-th one is poisoned."""
    snap = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    every = count // poison if poison else 0
    out: list[tuple[bytes, bytes]] = []
    for i in range(count):
        series_id = f"PC-{run}-{i % series}"
        when = snap + timedelta(seconds=i // series)
        sources = ["a", "b", "c"]
        if every and i % every == every // 2:
            sources[0] = "poison"
        observations = [
            Observation(
                observation_id=derive_observation_id(series_id, s, when, 100.0 + j, when, None),
                reference_data_id=series_id,
                source=s,
                snap=when,
                value=100.0 + j,
                observed_at=when,
                received_at=datetime.now(UTC),
            )
            for j, s in enumerate(sources)
        ]
        value = _encode.encode(
            ObservationsRecorded(
                schema_version=OBSERVATIONS_SCHEMA_VERSION,
                reference_data_id=series_id,
                observations=observations,
            )
        )
        out.append((series_id.encode(), value))
    return out


async def one_round(
    settings: Settings, pool: asyncpg.Pool, count: int, series: int, poison: int, limit: float
) -> dict[str, float]:
    run = uuid.uuid4().hex[:8].upper()
    kafka: KafkaSettings = msgspec.structs.replace(
        settings.kafka,
        observations_topic=f"bench.poison.{run.lower()}",
        dlq_topic=f"bench.poison.{run.lower()}.dlq",
    )
    await ensure_topics(kafka)
    producer = new_producer(kafka)
    await producer.start()
    try:
        pending = [
            await producer.send(kafka.observations_topic, value, key=key)
            for key, value in records(count, series, poison, run)
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()

    own = msgspec.structs.replace(
        settings, kafka=kafka, worker=WorkerSettings(group_id=f"bench-poison-{run}")
    )
    stage, _ = reconciling(own, None)

    async def after_store(
        store: PipelineStore,
        new: Sequence[Observation],
        traced: Collection[str],
        actors: Mapping[str, str],
    ) -> None:
        if any(o.source == "poison" for o in new):
            raise TypeError("simulated reconciliation bug")
        await stage(store, new, traced, actors)

    consumer = new_consumer(kafka, own.worker.group_id, "bench-poison")
    dlq_producer = new_producer(kafka)
    await consumer.start()
    await dlq_producer.start()
    worker = build_consumer(own, pool, consumer, dlq_producer, after_store=after_store)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    started = time.perf_counter()
    good = (count - poison) * 3
    try:
        async with asyncio.timeout(limit):
            # Polling the worker's counters keeps the worker free of benchmark hooks.
            while worker.counters.stored < good or worker.counters.dead_lettered < poison:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await consumer.stop()
        await dlq_producer.stop()
    return {
        "poison": poison,
        "seconds": round(seconds, 3),
        "records_per_second": round(count / seconds, 1),
        "dead_letters": worker.counters.dead_lettered,
        "transactions": worker.counters.transactions,
        "stored": worker.counters.stored,
    }


async def main(args: argparse.Namespace) -> None:
    prepare_stack()
    settings = load_settings(os.environ)
    # A database of its own: the rounds' audit trail and outbox stay out of everyone's way.
    dsn = await own_database("qis_bench_poison", fresh=True)
    settings = msgspec.structs.replace(
        settings, db=msgspec.structs.replace(settings.db, writer_dsn=dsn, reader_dsn=dsn)
    )
    pool = await open_pool(settings.db.writer_dsn, settings.db)
    best: dict[bool, dict[str, float]] = {}
    try:
        for _ in range(args.rounds):
            for poisoned in (False, True):
                result = await one_round(
                    settings,
                    pool,
                    args.records,
                    args.series,
                    args.poison if poisoned else 0,
                    args.timeout,
                )
                print(json.dumps(result))
                if poisoned not in best or (
                    result["records_per_second"] > best[poisoned]["records_per_second"]
                ):
                    best[poisoned] = result
    finally:
        await pool.close()
    clean, poisoned = best[False], best[True]
    print(
        json.dumps(
            {
                "clean_records_per_second": clean["records_per_second"],
                "poisoned_records_per_second": poisoned["records_per_second"],
                "ratio": round(poisoned["records_per_second"] / clean["records_per_second"], 3),
                "records_isolated_per_poison": poisoned["dead_letters"] / args.poison,
                "extra_transactions_per_poison": round(
                    (poisoned["transactions"] - clean["transactions"]) / args.poison, 1
                ),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--poison", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    asyncio.run(main(parser.parse_args()))
