"""Structured logs: one JSON object per line, carrying the X-Ray-format trace id."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec
from opentelemetry import trace

# Attributes every LogRecord has; anything else passed via `extra=` is an event field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Values msgspec cannot encode (exceptions, objects) are logged as their repr.
_encoder = msgspec.json.Encoder(enc_hook=repr)


def xray_trace_id(trace_id: int) -> str:
    """`1-<8 hex epoch>-<24 hex>`: the X-Ray rendering of a 128-bit W3C trace id."""
    hex_id = f"{trace_id:032x}"
    return f"1-{hex_id[:8]}-{hex_id[8:]}"


class JsonFormatter(logging.Formatter):
    """Renders `event`, level, logger, trace/span ids and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = xray_trace_id(context.trace_id)
            entry["span_id"] = f"{context.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's, aiokafka's) through the JSON formatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
