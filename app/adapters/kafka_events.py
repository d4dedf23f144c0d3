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
                pending = [
                    await self._producer.send(
                        message.topic,
                        value=message.payload,
                        key=message.key.encode(),
                        headers=[
                            (EVENT_ID_HEADER, message.event_id.encode()),
                            *((k, v.encode()) for k, v in message.headers.items()),
                        ],
                    )
                    for message in messages
                ]
                acknowledged = await asyncio.gather(*pending)
        except (UnicodeEncodeError, ValueError, TypeError) as exc:
            raise EventRefused(f"event cannot be sent: {exc!r}") from exc
        except (TimeoutError, KafkaError) as exc:
            if not is_transient(exc):
                raise EventRefused(f"event bus refused an event: {exc!r}") from exc
            raise EventBusUnavailable(f"event bus did not acknowledge: {exc!r}") from exc
        return [(metadata.partition, metadata.offset) for metadata in acknowledged]
