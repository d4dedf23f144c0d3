"""Which hours a lake read touches, and the bucket of a time (app/domain/lake_reading.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.domain.lake_reading import bucket_start, hours_between


def test_the_hours_of_a_range_and_the_bucket_of_a_time() -> None:
    t = datetime(2026, 1, 15, 14, 30, tzinfo=UTC)
    assert hours_between(t, t) == []
    assert hours_between(t, t.replace(hour=16, minute=0)) == [
        t.replace(minute=0),
        t.replace(hour=15, minute=0),
    ]
    assert hours_between(t, t.replace(hour=16, minute=0, second=1)) == [
        t.replace(hour=h, minute=0) for h in (14, 15, 16)
    ]
    assert bucket_start(t, None) == t
    assert bucket_start(t, timedelta(days=1)) == datetime(2026, 1, 15, tzinfo=UTC)
    assert bucket_start(t, timedelta(hours=1)) == t.replace(minute=0)
