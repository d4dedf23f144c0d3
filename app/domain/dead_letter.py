"""Dead letters: a record the worker could not use, with its error and origin."""

from __future__ import annotations

import msgspec


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """Carries the original bytes (base64 in JSON) so the record can be replayed once fixed."""

    schema_version: int = 1
    error: str
    origin_topic: str
    origin_partition: int
    origin_offset: int
    key: bytes | None
    value: bytes | None
