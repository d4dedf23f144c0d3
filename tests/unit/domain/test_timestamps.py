"""One spelling per instant (app/domain/timestamps.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from app.domain.timestamps import rfc3339


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (datetime(2026, 1, 15, 14, tzinfo=UTC), "2026-01-15T14:00:00Z"),
        (datetime(2026, 1, 15, 14, 0, 0, 123000, tzinfo=UTC), "2026-01-15T14:00:00.123000Z"),
        (
            datetime(2026, 1, 15, 15, 0, 0, 1, tzinfo=timezone(timedelta(hours=1))),
            "2026-01-15T14:00:00.000001Z",
        ),
    ],
)
def test_an_instant_is_utc_with_z_and_fractions_only_when_present(ts: datetime, text: str) -> None:
    assert rfc3339(ts) == text
    # the same text as the HTTP API's JSON (msgspec) for that instant
    assert msgspec.json.decode(msgspec.json.encode(ts.astimezone(UTC))) == text
