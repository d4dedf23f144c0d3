"""How the platform writes an instant as text: one spelling per instant.

RFC 3339 in UTC with a `Z`, fractional seconds only when there are any (six digits
then), as the HTTP API renders timestamps: `2026-01-15T14:00:00Z`,
`2026-01-15T14:00:00.123000Z`. Cache keys, audit entity ids and span annotations use
it, so the same instant is always the same text.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: datetime) -> str:
    """`ts` (aware) in UTC as RFC 3339 with `Z`."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
