"""Building observation batches and waiting for the worker in e2e tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

BASE_SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)


def observation(
    series: str, i: int, source: str = "src", value: float | None = None
) -> dict[str, Any]:
    snap = BASE_SNAP + timedelta(minutes=i // 10)
    return {
        "reference_data_id": series,
        "source": f"{source}{i % 10}",
        "snap": snap.isoformat().replace("+00:00", "Z"),
        "value": 100.0 + (i % 7) * 0.01 if value is None else value,
        "observed_at": snap.isoformat().replace("+00:00", "Z"),
    }


async def stored_count(pool: asyncpg.Pool, series: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM observations WHERE reference_data_id = $1", series
        )
    )


async def wait_for_count(
    pool: asyncpg.Pool, series: str, expected: int, timeout: float = 60, settle: float = 0.0
) -> int:
    """Poll until the series has `expected` rows (then keep watching `settle` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    count = -1
    while asyncio.get_running_loop().time() < deadline:
        count = await stored_count(pool, series)
        if count >= expected:
            break
        await asyncio.sleep(0.2)
    if settle:
        await asyncio.sleep(settle)
        count = await stored_count(pool, series)
    return count
