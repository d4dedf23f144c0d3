"""Ingestion on the real stack: acknowledged means stored exactly once, whatever happens."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.domain.dead_letter import DeadLetter
from app.domain.observation import Observation, ObservationsRecorded
from app.settings import Settings
from tests.conftest import unique_series
from tests.e2e.conftest import Service
from tests.e2e.ingestion_helpers import BASE_SNAP, observation, stored_count, wait_for_count


async def post_all(http: httpx.AsyncClient, series: str, total: int, batch: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, total, batch):
        items = [observation(series, i) for i in range(start, min(start + batch, total))]
        response = await http.post("/v1/observations", json={"observations": items})
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["accepted"] == len(items)
        assert body["duplicates"] == 0
        ids.extend(body["observation_ids"])
    return ids


async def test_ten_thousand_observations_stored_exactly_once(
    http: httpx.AsyncClient, worker: Service, pool: asyncpg.Pool
) -> None:
    series = unique_series()
    ids = await post_all(http, series, 10_000, 500)
    assert len(set(ids)) == 10_000
    assert await wait_for_count(pool, series, 10_000) == 10_000

    again = await post_all(http, series, 10_000, 1000)
    assert again == ids  # derived ids are stable, so the re-send is a no-op
    assert await wait_for_count(pool, series, 10_001, timeout=5) == 10_000


async def test_worker_sigkill_midstream_loses_and_duplicates_nothing(
    http: httpx.AsyncClient, worker: Service, pool: asyncpg.Pool
) -> None:
    series = unique_series()
    sender = asyncio.create_task(post_all(http, series, 6_000, 200))
    while await stored_count(pool, series) == 0:
        await asyncio.sleep(0.05)
    worker.kill()  # SIGKILL: no chance to commit or leave the group
    mid = await stored_count(pool, series)
    ids = await sender
    worker.start()
    assert 0 < mid < 6_000, "the kill must land mid-stream"
    assert len(set(ids)) == 6_000
    final = await wait_for_count(pool, series, 6_000, timeout=90, settle=1.0)
    assert final == 6_000
    distinct = await pool.fetchval(
        "SELECT count(DISTINCT observation_id) FROM observations WHERE reference_data_id = $1",
        series,
    )
    assert distinct == 6_000


async def test_duplicates_within_a_request_are_counted_and_stored_once(
    http: httpx.AsyncClient, worker: Service, pool: asyncpg.Pool
) -> None:
    series = unique_series()
    item = observation(series, 1)
    keyed = {**observation(series, 2), "observation_id": f"client-{uuid.uuid4().hex}"}
    response = await http.post(
        "/v1/observations", json={"observations": [item, keyed, item, keyed]}
    )
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 4
    assert body["duplicates"] == 2
    assert body["observation_ids"][1] == keyed["observation_id"]
    assert body["observation_ids"][0] == body["observation_ids"][2]
    assert await wait_for_count(pool, series, 2, settle=0.5) == 2


async def test_invalid_request_stores_nothing(
    http: httpx.AsyncClient, worker: Service, pool: asyncpg.Pool
) -> None:
    series = unique_series()
    items = [observation(series, 0), {**observation(series, 1), "value": "x"}]
    response = await http.post("/v1/observations", json={"observations": items})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["loc"] == ["observations", 1, "value"]
    # A valid marker posted afterwards proves the worker has caught up past this request.
    marker = unique_series()
    assert (
        await http.post("/v1/observations", json={"observations": [observation(marker, 0)]})
    ).status_code == 202
    assert await wait_for_count(pool, marker, 1) == 1
    assert await stored_count(pool, series) == 0


async def test_wrong_media_type_and_oversized_body(http: httpx.AsyncClient) -> None:
    wrong = await http.post(
        "/v1/observations", content=b"{}", headers={"content-type": "text/plain"}
    )
    assert wrong.status_code == 415
    assert wrong.json()["status"] == 415
    big = b'{"observations": [' + b" " * (2 * 1024 * 1024) + b"]}"
    too_large = await http.post(
        "/v1/observations", content=big, headers={"content-type": "application/json"}
    )
    assert too_large.status_code == 413
    assert too_large.headers["content-type"].startswith("application/problem+json")


async def test_poison_record_goes_to_the_dlq_and_the_worker_keeps_going(
    settings: Settings, worker: Service, pool: asyncpg.Pool
) -> None:
    series = unique_series()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        poison = await producer.send_and_wait(
            settings.kafka.observations_topic, b"{not json", key=series.encode()
        )
        good = ObservationsRecorded(
            schema_version=1,
            reference_data_id=series,
            observations=[
                Observation(
                    observation_id=f"poison-test-{uuid.uuid4().hex}",
                    reference_data_id=series,
                    source="s",
                    snap=BASE_SNAP,
                    value=1.0,
                    observed_at=BASE_SNAP,
                    received_at=BASE_SNAP,
                )
            ],
        )
        await producer.send_and_wait(
            settings.kafka.observations_topic, msgspec.json.encode(good), key=series.encode()
        )
    finally:
        await producer.stop()

    assert await wait_for_count(pool, series, 1) == 1  # the partition was not blocked

    consumer = AIOKafkaConsumer(
        settings.kafka.dlq_topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    letter: DeadLetter | None = None
    try:
        async with asyncio.timeout(30):
            while letter is None:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        if record.key == series.encode():
                            letter = msgspec.json.decode(record.value or b"", type=DeadLetter)
    finally:
        await consumer.stop()
    assert letter.origin_topic == settings.kafka.observations_topic
    assert letter.origin_partition == poison.partition
    assert letter.origin_offset == poison.offset
    assert letter.value == b"{not json"
    assert "DecodeError" in letter.error
