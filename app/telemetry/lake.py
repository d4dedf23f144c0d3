"""The lake archive's span: one per hour archived, on the scheduler's tracer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from opentelemetry import trace


@contextmanager
def archive_span(hour: datetime) -> Iterator[None]:
    """`lake-archive-hour`, with the hour archived (`qis.lake.hour`, ISO 8601 UTC)."""
    tracer = trace.get_tracer("qis.scheduler")
    with tracer.start_as_current_span(
        "lake-archive-hour", attributes={"qis.lake.hour": hour.isoformat()}
    ):
        yield
