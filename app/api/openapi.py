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
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Reference,
    RequestBody,
    Schema,
)

_REF = "#/components/schemas/{name}"
_FIELDS = {
    (f.metadata.get("alias") or f.name): f.name
    for f in dataclasses.fields(Schema)
    if f.name != "data_container"
}


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


def document_request_body(app: Litestar, path: str, method: str, body_type: type) -> None:
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
        content={"application/json": OpenAPIMediaType(schema=to_openapi(top))},
        description=body_type.__doc__,
    )
