"""Sizing measurements on the real PostgreSQL and Redis: plausible, and nothing left behind."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as redis

from app.settings import Settings
from benchmarks.sizing.measure import measure
from benchmarks.sizing.model import Deployment, Workload, evaluate

pytestmark = pytest.mark.integration


async def _leftovers(pool: asyncpg.Pool) -> tuple[int, int, int]:
    async with pool.acquire() as conn:
        series = await conn.fetchval(
            "SELECT count(*) FROM reference_data WHERE reference_data_id ~ '^SZQ?[0-9A-F]{6}-'"
        )
        schemas = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'sizing\\_%'"
        )
        versions = await conn.fetchval(
            "SELECT count(*) FROM official_values WHERE reference_data_id ~ '^SZQ?[0-9A-F]{6}-'"
        )
    return int(series), int(schemas), int(versions)


async def test_measurements_are_plausible_and_leave_nothing_behind(
    settings: Settings, pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    before = await _leftovers(pool)

    m = await measure(settings, quick=True)

    observations = m.table("observations")
    assert 50 < observations.bytes_per_row < 2000
    assert 50 < observations.wal_per_row < 4000
    # one B-tree, keyed (series, snap, id): no random-key index on the write path; the
    # lake archive's time indexes are BRIN, a few pages per table
    assert set(observations.index_bytes) == {
        "observations_pkey",
        "observations_snap_idx",
        "observations_stored_at_idx",
    }
    for brin in ("observations_snap_idx", "observations_stored_at_idx"):
        # metapage, range map and a summary page: a few pages where the B-tree has hundreds
        assert observations.index_bytes[brin] <= 4 * 8192
        assert observations.index_bytes[brin] * 4 < observations.index_bytes["observations_pkey"]
    assert "audit_log_hash_key" not in m.table("audit_log").index_bytes
    official = m.table("official_values")
    assert 100 < official.bytes_per_row < 4000
    assert m.write_path.versions == m.write_path.observations / 5  # one version per snap
    assert m.write_path.audit_rows > m.write_path.versions
    assert m.write_path.worker_rows_per_cpu_second > 100
    assert m.write_path.db_cpu_seconds is not None  # the stack runs on this machine
    assert 200 < m.cache_entry("official").bytes_per_entry < 5000
    assert (
        m.cache_entry("history_page").bytes_per_entry > 20 * m.cache_entry("official").value_bytes
    )
    assert m.cache_entry("official").example_key.startswith("official:{SERIES-")
    for q in m.queries:
        assert 0 < q.wall_ms < 1000
        assert q.rows >= 1
    # the model runs on what was measured
    assert len(evaluate(Workload(), Deployment(), m)) == 13
    # rolled back and unlinked: nothing of the measurement remains
    assert await _leftovers(pool) == before
    assert [key async for key in redis_client.scan_iter(match="*{SIZING*")] == []
