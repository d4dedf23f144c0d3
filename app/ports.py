"""Ports: what the services need from the outside world, as Protocols."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from app.domain.observation import ObservationsRecorded


class IngestionLogUnavailable(RuntimeError):
    """The ingestion log did not acknowledge in time; nothing may be acknowledged to the client."""


# runtime_checkable: Litestar checks injected dependencies against their declared type.
@runtime_checkable
class IngestionLog(Protocol):
    """Durable log of accepted observations (Kafka in production)."""

    async def append(self, records: Sequence[ObservationsRecorded]) -> None:
        """Return once every record is acknowledged; else raise IngestionLogUnavailable."""
        ...


@runtime_checkable
class HealthCheck(Protocol):
    """A dependency the readiness probe asks about."""

    name: str

    async def ping(self) -> None:
        """Raise when the dependency is unreachable."""
        ...
