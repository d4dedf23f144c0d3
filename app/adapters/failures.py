"""Which failures of the database or the broker another attempt may not meet.

The worker retries these (with backoff, from its stored positions) and isolates anything
else, which the same records would raise again. The scheduler does the same for snaps
and outbox rows.
"""

from __future__ import annotations

import asyncpg
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from app.ports import DescriptorStoreUnavailable

_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection lost or refused
    asyncpg.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.LockNotAvailableError,  # 55P03: lock timeout
    asyncpg.OperatorInterventionError,  # class 57: statement timeout, admin shutdown
    asyncpg.InsufficientResourcesError,  # class 53: disk full, too many connections
    KafkaError,  # broker unavailable, not acknowledged in time
    DescriptorStoreUnavailable,  # the document store (DocumentDB) did not answer in time
)
# What the broker refuses about a record itself: sending it again is refused again.
_RECORD_REFUSED: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    InvalidTopicError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt of the same work may succeed."""
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", "another operation is in progress"; its ValueError
        # subclass is an argument the driver cannot encode, which is deterministic.
        return not isinstance(exc, ValueError)
    if isinstance(exc, KafkaError):
        return not isinstance(exc, _RECORD_REFUSED)
    return isinstance(exc, _TRANSIENT)
