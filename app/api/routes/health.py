"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency

from app.api.openapi import ok
from app.ports import HealthCheck

CHECK_TIMEOUT_SECONDS = 1.5


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """Per-dependency state; `failing` names required dependencies that are down,
    `degraded` optional ones (the service still answers without them)."""

    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, str]
    failing: list[str]
    degraded: list[str] = msgspec.field(default_factory=list)


class Liveness(msgspec.Struct, frozen=True):
    status: Literal["ok"] = "ok"


READY = Readiness(
    status="ready", checks={"postgres": "ok", "kafka": "ok", "redis": "ok"}, failing=[]
)
UNAVAILABLE = Readiness(
    status="unavailable",
    checks={
        "postgres": "ok",
        "kafka": "error: KafkaConnectionError: no broker answered",
        "redis": "ok",
    },
    failing=["kafka"],
)


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
    # A check may say `required = False` (Redis: reads fall back to PostgreSQL).
    required = {c.name: getattr(c, "required", True) for c in checks}
    down = sorted(name for name, state in states.items() if state != "ok")
    failing = [name for name in down if required[name]]
    degraded = [name for name in down if not required[name]]
    status: Literal["ready", "degraded", "unavailable"] = (
        "unavailable" if failing else "degraded" if degraded else "ready"
    )
    return Readiness(status=status, checks=states, failing=failing, degraded=degraded)


@get(
    "/health/live",
    sync_to_thread=False,
    tags=["operations"],
    operation_id="getLiveness",
    responses={200: ok(Liveness, "the process is up", "up", Liveness())},
)
def live() -> Liveness:
    """The process is up; no dependency is checked."""
    return Liveness()


@get(
    "/health/ready",
    tags=["operations"],
    operation_id="getReadiness",
    responses={
        200: ok(Readiness, "ready, or degraded without Redis", "ready", READY),
        503: ok(Readiness, "a required dependency is down", "Kafka down", UNAVAILABLE),
    },
)
async def ready(health_checks: NamedDependency[list[HealthCheck]]) -> Response[Readiness]:
    """200 when PostgreSQL and Kafka answer; 503 naming the failing dependency otherwise.

    Redis down is `200` with `"status": "degraded"` and `degraded: ["redis"]`: it is only
    the L2 cache, reads fall back to PostgreSQL, so taking the pod out of the load
    balancer would turn a slower service into no service (docs/cache.md).
    """
    state = await readiness(health_checks)
    return Response(state, status_code=200 if not state.failing else 503)
