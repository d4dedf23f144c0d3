"""Black box: the running api continues the trace an Application Load Balancer started."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e

ROOT = "1-6b1123fa-0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("header", "sampled"),
    [
        (f"Root={ROOT};Sampled=1", "1"),
        (f"Root={ROOT};Sampled=0", "0"),
        (f"Self=1-6b1123fb-76543210fedcba9876543210;Root={ROOT};Sampled=1", "1"),
        (f"Root={ROOT};Lineage=a87bd80c:1;Sampled=0", "0"),
    ],
)
async def test_a_root_only_header_gets_the_same_root_back(
    http: httpx.AsyncClient, header: str, sampled: str
) -> None:
    response = await http.get("/health/live", headers={"X-Amzn-Trace-Id": header})

    assert response.status_code == 200
    fields = dict(f.split("=", 1) for f in response.headers["x-amzn-trace-id"].split(";"))
    assert fields["Root"] == ROOT
    assert fields["Sampled"] == sampled
    assert len(fields["Parent"]) == 16


async def test_without_a_decision_every_request_with_that_root_gets_the_same_one(
    http: httpx.AsyncClient,
) -> None:
    decisions = set()
    for _ in range(5):
        response = await http.get("/health/live", headers={"X-Amzn-Trace-Id": f"Root={ROOT}"})
        fields = dict(f.split("=", 1) for f in response.headers["x-amzn-trace-id"].split(";"))
        assert fields["Root"] == ROOT
        decisions.add(fields["Sampled"])
    assert len(decisions) == 1
