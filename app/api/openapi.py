"""Request bodies the handlers decode themselves, documented from their msgspec types.

The ingestion handler reads raw bytes (one prebuilt decoder, item-level error listing), so
Litestar cannot see its body type. msgspec generates the JSON Schema of the type; this
module converts it into Litestar's OpenAPI objects and attaches it to the operation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Example,
    OpenAPIMediaType,
    OpenAPIType,
    Reference,
    RequestBody,
    Schema,
)

from app.api.examples import PROBLEMS, STORE_UNAVAILABLE, example
from app.api.problems import PROBLEM_JSON, Problem

_REF = "#/components/schemas/{name}"
_FIELDS = {
    (f.metadata.get("alias") or f.name): f.name
    for f in dataclasses.fields(Schema)
    if f.name != "data_container"
}
# Litestar 2.25's `Schema` declares no alias for this one field (its output spells it right).
_FIELDS["exclusiveMaximum"] = "exclusive_maximum"


def to_openapi(node: Any) -> Any:
    """JSON Schema (dict) -> Litestar `Schema`/`Reference`, recursively."""
    if isinstance(node, list):
        return [to_openapi(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return Reference(ref=node["$ref"])
    kwargs: dict[str, Any] = {}
    for key, value in node.items():
        name = _FIELDS.get(key)
        if name is None:
            continue  # e.g. propertyNames constraints Litestar's model cannot carry
        if name == "type":
            value = OpenAPIType(value)
        elif name in {"properties", "pattern_properties"}:
            value = {k: to_openapi(v) for k, v in value.items()}
        elif isinstance(value, dict | list) and name not in {"enum", "required", "default"}:
            value = to_openapi(value)
        kwargs[name] = value
    return Schema(**kwargs)


def ok(data: Any, description: str, summary: str, value: Any) -> ResponseSpec:
    """A success response of type `data` with one fixed example (never generated ones)."""
    return ResponseSpec(
        data, description=description, generate_examples=False, examples=example(summary, value)
    )


def problems(**descriptions: str) -> dict[int, ResponseSpec]:
    """problem+json responses, e.g. `problems(s400="invalid cursor", s404="unknown series")`.

    Every route also lists 500 (the body never carries more than the trace-id hint) and
    503 (a store did not answer: PostgreSQL, Redis or Kafka; with Retry-After).
    """
    statuses = {int(key.removeprefix("s")): text for key, text in descriptions.items()}
    statuses.setdefault(500, "unexpected failure; the log line carries the trace id")
    samples = {status: PROBLEMS[status] for status in statuses}
    if 503 not in statuses:
        statuses[503] = "a backing store did not answer; retry after Retry-After seconds"
        samples[503] = STORE_UNAVAILABLE
    return {
        status: ResponseSpec(
            Problem,
            description=text,
            media_type=PROBLEM_JSON,
            generate_examples=False,
            examples=example(samples[status].title, samples[status]),
        )
        for status, text in sorted(statuses.items())
    }


def document_request_body(
    app: Litestar,
    path: str,
    method: str,
    body_type: type,
    examples: dict[str, Example | Reference] | None = None,
) -> None:
    """Attach `body_type`'s schema as the JSON request body of `method path`."""
    (top,), components = msgspec.json.schema_components([body_type], ref_template=_REF)
    schema = app.openapi_schema
    assert schema.components is not None
    assert schema.paths is not None
    existing = dict(schema.components.schemas or {})
    existing.update({name: to_openapi(value) for name, value in components.items()})
    schema.components.schemas = existing
    operation = getattr(schema.paths[path], method.lower())
    operation.request_body = RequestBody(
        required=True,
        content={"application/json": OpenAPIMediaType(schema=to_openapi(top), examples=examples)},
        description=body_type.__doc__,
    )
