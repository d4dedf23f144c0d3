"""The scheduler copies what it publishes to EventBridge (read back from the rules' SQS
queues) and Timestream, as `make run` does, through the running api, worker, scheduler.

moto's Timestream accepts WriteRecords but answers no query, so the Timestream side is
checked by the sink relay's position: it passes an event only once every WriteRecords
call of its batch was accepted (a refused call keeps the position); the records
themselves are checked at the adapter's boundary (tests/unit/adapters/test_timestream.py)
and against moto (tests/integration/test_timestream_moto.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import httpx

from app.adapters.eventbridge import aws_client
from app.settings import Settings
from tests.conftest import unique_series
from tests.e2e.conftest import Downstream, Service
from tests.e2e.reconciliation_helpers import configure, current_snap, item, official_value, post

ABC = ["a", "b", "c"]


def queue_messages(downstream: Downstream, rule: str, series: str, count: int) -> list[Any]:
    """The envelopes of `series` on a rule's queue, in receipt order, once `count` came."""
    sqs = aws_client("sqs", downstream.eventbridge)
    url = downstream.queues[f"{downstream.eventbridge.bus_name}-{rule}"]
    found: list[Any] = []
    deadline = time.monotonic() + 60
    while len(found) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} events on {rule}"
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in batch.get("Messages", []):
            envelope = json.loads(message["Body"])
            if envelope["detail"].get("reference_data_id") == series:
                found.append(envelope)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


async def outbox_events(pool: asyncpg.Pool, series: str, topic: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT id, event_id FROM outbox WHERE key = $1 AND topic = $2 ORDER BY id",
            series,
            topic,
        )
    )


async def test_official_values_reach_eventbridge_and_timestream_in_order(
    http: httpx.AsyncClient,
    worker: Service,
    scheduler: Service,
    downstream: Downstream,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    series, snap = unique_series(), current_snap()
    await configure(http, series, expected_sources=ABC)
    await post(
        http,
        item(series, "a", 100.0, snap),
        item(series, "b", 100.02, snap),
        item(series, "c", 99.99, snap),
    )
    v1 = await official_value(http, series, snap)
    await post(http, item(series, "c", 100.04, snap, observed_after=0.5))
    v2 = await official_value(http, series, snap, at_least=2)

    # EventBridge -> the official-values rule -> its SQS queue: both versions, in order,
    # with the outbox's event ids and the published content.
    envelopes = queue_messages(downstream, "official-values", series, 2)
    outbox = await outbox_events(pool, series, settings.kafka.official_values_topic)
    assert [e["detail"]["event_id"] for e in envelopes] == [row["event_id"] for row in outbox]
    assert [e["detail"]["version"] for e in envelopes] == [1, 2]
    assert {e["detail-type"] for e in envelopes} == {"Official Value Published"}
    assert {e["source"] for e in envelopes} == {downstream.eventbridge.source}
    for envelope, version in zip(envelopes, (v1, v2), strict=True):
        detail = envelope["detail"]
        assert detail["type"] == "official_value_published"
        assert (detail["value"], detail["status"], detail["quality"]) == (
            version["value"],
            version["status"],
            version["quality"],
        )
        assert detail["recorded_at"] == version["recorded_at"]

    # Timestream: the relay passed both events (every WriteRecords call accepted).
    deadline = time.monotonic() + 60
    while True:
        position = await pool.fetchval(
            "SELECT position FROM relay_positions WHERE name = 'sink.timestream'"
        )
        if position is not None and position >= outbox[-1]["id"]:
            break
        assert time.monotonic() < deadline, f"timestream relay at {position}:\n{scheduler.tail()}"
        await asyncio.sleep(0.2)
    assert b"sink relay failed" not in scheduler.log.read_bytes()
