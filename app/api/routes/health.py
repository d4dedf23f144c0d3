"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from app.ports import HealthCheck

CHECK_TIMEOUT_SECONDS = 1.5


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """Per-dependency state; `failing` names what is down."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    failing: list[str]


class Liveness(msgspec.Struct, frozen=True):
    status: Literal["ok"] = "ok"


async def _check(check: HealthCheck) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await check.ping()
    except Exception as exc:  # any failure means "not ready", with its reason shown
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return "ok"


async def readiness(checks: list[HealthCheck]) -> Readiness:
    """Ask every dependency at once, each bounded in time."""
    results = await asyncio.gather(*(_check(c) for c in checks))
    states = {c.name: r for c, r in zip(checks, results, strict=True)}
    failing = sorted(name for name, state in states.items() if state != "ok")
    return Readiness(status="unavailable" if failing else "ready", checks=states, failing=failing)


@get("/health/live", sync_to_thread=False, tags=["operations"])
def live() -> Liveness:
    """The process is up; no dependency is checked."""
    return Liveness()


@get(
    "/health/ready",
    tags=["operations"],
    responses={503: ResponseSpec(data_container=Readiness, description="a dependency is down")},
)
async def ready(health_checks: NamedDependency[list[HealthCheck]]) -> Response[Readiness]:
    """200 when PostgreSQL, Kafka and Redis answer; 503 naming the failing dependency otherwise."""
    state = await readiness(health_checks)
    return Response(state, status_code=200 if not state.failing else 503)
