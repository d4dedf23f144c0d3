"""Publishing outbox events to Kafka (the relay's `EventPublisher`).

The producer is the idempotent, acks=all one of `new_producer`: records of one partition
are written in send order even across retries, and keys are series ids, so each series'
events keep their outbox order on every topic. Every record carries its stable event id
in the `qis-event-id` header (consumers deduplicate without parsing) and the trace
context captured when the event was written, so the consumer's span joins that trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from opentelemetry import context as otel_context
from opentelemetry import propagate

from app.adapters.failures import is_transient
from app.ports import EventBusUnavailable, EventRefused, PendingMessage

EVENT_ID_HEADER = "qis-event-id"


class KafkaEventPublisher:
    """Sends a batch in order and waits for every acknowledgement, within a timeout."""

    def __init__(self, producer: AIOKafkaProducer, timeout_seconds: float) -> None:
        self._producer = producer
        self._timeout = timeout_seconds

    async def publish(self, messages: Sequence[PendingMessage]) -> list[tuple[int, int]]:
        try:
            async with asyncio.timeout(self._timeout):
                pending = [await self._send(message) for message in messages]
                acknowledged = await asyncio.gather(*pending)
        except (UnicodeEncodeError, ValueError, TypeError) as exc:
            raise EventRefused(f"event cannot be sent: {exc!r}") from exc
        except (TimeoutError, KafkaError) as exc:
            if not is_transient(exc):
                raise EventRefused(f"event bus refused an event: {exc!r}") from exc
            raise EventBusUnavailable(f"event bus did not acknowledge: {exc!r}") from exc
        return [(metadata.partition, metadata.offset) for metadata in acknowledged]

    async def _send(self, message: PendingMessage) -> asyncio.Future[RecordMetadata]:
        """Send one event carrying the trace of the work that produced it, once.

        With the aiokafka instrumentation installed, `send` injects the current context
        itself (under its `send` span): the stored context is made current for the call
        and not added again, or every record would carry two `traceparent` and two
        `X-Amzn-Trace-Id` headers of different traces. Without it, the stored headers
        are the record's.
        """
        headers = [(EVENT_ID_HEADER, message.event_id.encode())]
        key = message.key.encode()
        if not _instrumented(self._producer):
            headers += [(k, v.encode()) for k, v in message.headers.items()]
            sent: asyncio.Future[RecordMetadata] = await self._producer.send(
                message.topic, value=message.payload, key=key, headers=headers
            )
            return sent
        token = otel_context.attach(propagate.extract(message.headers))
        try:
            sent = await self._producer.send(
                message.topic, value=message.payload, key=key, headers=headers
            )
        finally:
            otel_context.detach(token)
        return sent


def _instrumented(producer: AIOKafkaProducer) -> bool:
    """Whether OpenTelemetry's aiokafka instrumentation wraps this producer's `send`."""
    return hasattr(type(producer).send, "__wrapped__")
