"""Wire types of the HTTP contract (docs/api.md) that are not domain types."""

from __future__ import annotations

import msgspec


class ObservationsAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """`202` body: ids in request order; duplicates counts ids repeated within the request."""

    accepted: int
    duplicates: int
    observation_ids: list[str]
