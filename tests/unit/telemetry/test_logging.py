"""Every log line is one JSON object carrying the X-Ray trace id of the current span."""

from __future__ import annotations

import io
import json
import logging
import re

from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.trace import TracerProvider

from app.telemetry.logging import JsonFormatter, xray_trace_id
from app.telemetry.tracing import xray_header


def capture(logger_name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_line_inside_a_span_carries_xray_ids_and_fields() -> None:
    logger, stream = capture("test.logging.span")
    tracer = TracerProvider(id_generator=AwsXRayIdGenerator()).get_tracer("t")
    with tracer.start_as_current_span("work") as span:
        logger.warning("batch stored", extra={"rows": 12, "series": ["A", "B"]})
        context = span.get_span_context()
    entry = json.loads(stream.getvalue())
    assert entry["event"] == "batch stored"
    assert entry["level"] == "WARNING"
    assert entry["rows"] == 12
    assert entry["series"] == ["A", "B"]
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", entry["trace_id"])
    assert entry["trace_id"] == xray_trace_id(context.trace_id)
    assert entry["span_id"] == f"{context.span_id:016x}"
    header = xray_header(span)
    assert header is not None
    assert header.startswith(f"Root={entry['trace_id']};Parent={entry['span_id']};Sampled=1")


def test_line_outside_a_span_has_no_trace_id_and_survives_odd_values() -> None:
    logger, stream = capture("test.logging.plain")
    logger.info("started", extra={"owner": object(), "positions": {1: (2, 3)}})
    entry = json.loads(stream.getvalue())
    assert "trace_id" not in entry
    assert entry["positions"] == {"1": [2, 3]}
    assert entry["owner"].startswith("<object object")
