"""The document store's metrics, from PyMongo's command monitoring.

`DocumentStoreCommands` is a `pymongo.monitoring.CommandListener` given to the api's
client (`new_client(settings, listeners=...)`): every command the driver sends ends in
`succeeded` or `failed` with its duration, so the adapter's code stays free of timing.
Spans come from OpenTelemetry's PyMongo instrumentation (app/telemetry/setup.py).
"""

from __future__ import annotations

from typing import Protocol

from pymongo import monitoring

from app.telemetry.catalogue import DOCUMENT_OPERATIONS

# The `Operation` dimension: the commands the descriptor store sends; anything else
# (handshakes, server monitoring) is `other`, so the dimension stays bounded.
OPERATIONS = frozenset(DOCUMENT_OPERATIONS) - {"other"}


class DocumentStoreMetrics(Protocol):
    def document_command(self, operation: str, milliseconds: float, failed: bool) -> None: ...


def operation_of(command_name: str) -> str:
    return command_name if command_name in OPERATIONS else "other"


class DocumentStoreCommands(monitoring.CommandListener):
    """Records each command's latency and failures (`DocumentStoreLatency`,
    `DocumentStoreFailures`, by `Operation`)."""

    def __init__(self, metrics: DocumentStoreMetrics) -> None:
        self._metrics = metrics

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        return None

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._metrics.document_command(
            operation_of(event.command_name), event.duration_micros / 1000.0, failed=False
        )

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._metrics.document_command(
            operation_of(event.command_name), event.duration_micros / 1000.0, failed=True
        )
