"""Broker outage: POST answers 503 with Retry-After, and recovers when the broker is back."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.conftest import unique_series
from tests.e2e.conftest import Service
from tests.e2e.ingestion_helpers import observation, wait_for_count
from tests.stack import stack


async def test_broker_down_means_503_then_recovery(
    http: httpx.AsyncClient, worker: Service, pool: asyncpg.Pool
) -> None:
    series = unique_series()
    stack("down", "kafka")
    try:
        response = await http.post(
            "/v1/observations", json={"observations": [observation(series, 0)]}
        )
        ready = await http.get("/health/ready")
    finally:
        stack("up", "kafka")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert ready.status_code == 503
    assert "kafka" in ready.json()["failing"]

    # Once the broker is back, the producer reconnects by itself.
    accepted = None
    for _ in range(60):
        accepted = await http.post(
            "/v1/observations", json={"observations": [observation(series, 1)]}
        )
        if accepted.status_code == 202:
            break
        await asyncio.sleep(1)
    assert accepted is not None
    assert accepted.status_code == 202, accepted.text
    # The acknowledged observation is stored. The refused one may or may not arrive (the
    # producer can still deliver its buffered batch): the client was told nothing, and a
    # retry is idempotent, so either is correct.
    acked_id = accepted.json()["observation_ids"][0]
    stored = 0
    async with asyncio.timeout(90):
        while stored == 0:
            stored = await pool.fetchval(
                "SELECT count(*) FROM observations WHERE observation_id = $1", acked_id
            )
            await asyncio.sleep(0.2)
    assert stored == 1
    assert await wait_for_count(pool, series, 1) in (1, 2)
