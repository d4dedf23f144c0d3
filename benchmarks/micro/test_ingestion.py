"""Micro-benchmarks of the ingestion route's CPU work: decode and validate a request body.

Run: `.venv/bin/pytest benchmarks/micro/test_ingestion.py --benchmark-only --benchmark-enable`
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from app.api.routes.observations import decode_submission

SNAP = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
SOURCES = ("binance", "bitstamp", "coinbase", "kraken", "okx")


def _stamp(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def body(count: int) -> bytes:
    """A request of `count` observations: 20 series x 5 sources per 100, half with attributes."""
    items: list[dict[str, Any]] = []
    for n in range(count):
        item: dict[str, Any] = {
            "reference_data_id": f"BENCH-{n // len(SOURCES) % 20:03d}",
            "source": SOURCES[n % len(SOURCES)],
            "snap": _stamp(SNAP),
            "value": 3301.25 + n * 0.01,
            "observed_at": _stamp(SNAP + timedelta(milliseconds=120 + n)),
        }
        if n % 2:
            item["attributes"] = {"bid": 3301.0, "ask": 3301.5}
        items.append(item)
    return msgspec.json.encode({"observations": items})


@pytest.mark.benchmark(group="decode-validate")
@pytest.mark.parametrize("count", [1, 100])
def test_decode_and_validate_a_request(benchmark: Any, count: int) -> None:
    payload = body(count)

    submission = benchmark(decode_submission, payload)

    assert len(submission.observations) == count
    assert submission.observations[-1].snap == SNAP
