"""Kafka producer clients side by side: the api's aiokafka path against confluent-kafka.

    uv pip install --python .venv/bin/python confluent-kafka==2.16.1   # not a dependency
    .venv/bin/python -m benchmarks.e2e.kafka_clients [--seconds 8] [--rounds 3]

The question (issue 15): would another client make ingestion at least 1.5x faster with
every delivery guarantee kept? Both arms produce what the api produces for a batch-100
request of `benchmarks.e2e.ingestion.bodies()`: one version-2 record per partition the
request touches (12 records of about 1.3 KB), each with the trace and actor headers, and
wait for every acknowledgement, closed loop over 8 concurrent "requests", to an
observations topic of the run's own (12 partitions) on the local broker. Both with
`acks=all`, idempotence, lz4 and the api's 2 ms linger:

- `aiokafka`: the api's own code, `new_producer` and `PartitionBatcher` (one batch per
  partition in flight, built with `create_batch`/`send_batch`);
- `confluent`: confluent-kafka's `Producer` (librdkafka, C), `produce()` with a delivery
  callback resolving an asyncio future through `call_soon_threadsafe`, a thread polling
  the delivery reports. Its `aio.AIOProducer` does not take headers in its batch mode
  (it raises NotImplementedError), so it cannot carry the records' trace context.

Each arm runs in a child process of its own, rounds alternated; reported per round:
requests/s, records/s and the child's CPU (user + system, all threads, librdkafka's
included) per record. The summary keeps each arm's best round and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from benchmarks.e2e.processes import (
    create_topics,
    own_topic_and_group,
    prepare_stack,
    stack_settings,
)

CONCURRENCY = 8
PARTITIONS = 12
HEADERS = [
    ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
    ("qis-actor", b"bench-client"),
]


def request_records() -> list[list[bytes]]:
    """Per request, the 12 partition records the api would produce for one batch-100 body
    (the observations split over the partitions as the api's record layout has them)."""
    from benchmarks.e2e.ingestion import bodies

    out = []
    for body in bodies("KCLIENT", 100, 50):
        observations = msgspec.json.decode(body)["observations"]
        out.append(
            [
                msgspec.json.encode({"schema_version": 2, "observations": observations[p::12]})
                for p in range(PARTITIONS)
            ]
        )
    return out


async def closed_loop(
    send_request: Callable[[list[bytes]], Awaitable[None]], seconds: float
) -> dict[str, float]:
    requests = request_records()
    done = 0
    deadline = time.perf_counter() + seconds

    async def one(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            await send_request(requests[i % len(requests)])
            done += 1
            i += CONCURRENCY

    for warm in requests[:20]:
        await send_request(warm)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    records = done * PARTITIONS
    return {
        "requests_per_s": round(done / elapsed, 1),
        "records_per_s": round(records / elapsed, 1),
        "cpu_us_per_record": round(cpu / records * 1e6, 2),
    }


async def run_aiokafka(topic: str, seconds: float) -> dict[str, float]:
    from app.adapters.kafka import PartitionBatcher, new_producer

    producer = new_producer(stack_settings().kafka)
    await producer.start()
    batcher = PartitionBatcher(producer, topic)
    try:

        async def send_request(records: list[bytes]) -> None:
            await asyncio.gather(
                *(batcher.submit(p, None, value, HEADERS) for p, value in enumerate(records))
            )

        return await closed_loop(send_request, seconds)
    finally:
        await producer.stop()


async def run_confluent(topic: str, seconds: float) -> dict[str, float]:
    from confluent_kafka import KafkaException, Producer

    settings = stack_settings().kafka
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": settings.compression,
            "linger.ms": settings.linger_ms,
        }
    )
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            producer.poll(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    def settle(future: asyncio.Future[None], err: Any) -> None:
        if future.done():
            return
        if err is None:
            future.set_result(None)
        else:
            future.set_exception(KafkaException(err))

    def callback(future: asyncio.Future[None]) -> Callable[[Any, Any], None]:
        return lambda err, _msg: loop.call_soon_threadsafe(settle, future, err)

    async def send_request(records: list[bytes]) -> None:
        futures = []
        for partition, value in enumerate(records):
            future: asyncio.Future[None] = loop.create_future()
            producer.produce(
                topic,
                value=value,
                partition=partition,
                headers=HEADERS,
                on_delivery=callback(future),
            )
            futures.append(future)
        await asyncio.gather(*futures)

    try:
        return await closed_loop(send_request, seconds)
    finally:
        stop.set()
        poller.join()
        producer.flush(10)


def child(client: str, topic: str, seconds: float) -> None:
    run = run_aiokafka if client == "aiokafka" else run_confluent
    print(json.dumps(asyncio.run(run(topic, seconds))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["aiokafka", "confluent"], help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.topic, args.seconds)
        return
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        sys.exit(
            "confluent-kafka is not installed (not a dependency): "
            "uv pip install --python .venv/bin/python confluent-kafka==2.16.1"
        )
    prepare_stack()
    isolation = own_topic_and_group("KCLIENT" + uuid.uuid4().hex[:6].upper())
    create_topics(isolation)
    topic = isolation["QIS_KAFKA__OBSERVATIONS_TOPIC"]
    results: dict[str, list[dict[str, float]]] = {"aiokafka": [], "confluent": []}
    for n in range(args.rounds):
        order = ["aiokafka", "confluent"] if n % 2 == 0 else ["confluent", "aiokafka"]
        for client in order:
            command = [sys.executable, "-m", "benchmarks.e2e.kafka_clients", "--child", client]
            out = subprocess.run(
                [*command, "--topic", topic, "--seconds", str(args.seconds)],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results[client].append(result)
            print(f"round {n + 1} {client:9} {result}", flush=True)
    best = {c: max(r, key=lambda x: x["records_per_s"]) for c, r in results.items()}
    for client, r in best.items():
        print(f"best {client:9} {r}")
    ratio = best["confluent"]["records_per_s"] / best["aiokafka"]["records_per_s"]
    cpu = best["confluent"]["cpu_us_per_record"] / best["aiokafka"]["cpu_us_per_record"]
    print(f"confluent / aiokafka: throughput {ratio:.2f}x, CPU per record {cpu:.2f}x")


if __name__ == "__main__":
    main()
