"""The client's structs match the service's OpenAPI document, route by route.

For every operation, the request body and each JSON response are compared with the
client struct that (de)serialises them: the same properties, the same required ones, and
the same types (integer, number, string, date-time, enum values, arrays, maps, nested
objects, nullability). Descriptions, examples and bounds are the server's business.

The document is `openapi.json` at the repository root when it exists (the committed
contract), else the one the application generates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.serialization import encode_json
from qis_client import models

from app.entrypoints.api import create_app
from app.settings import load_settings

REPO = Path(__file__).resolve().parents[3]
Schema = dict[str, Any]

# (method, path, status or "request") -> the client struct for that body.
BODIES: dict[tuple[str, str, str], type[msgspec.Struct]] = {
    ("post", "/v1/observations", "request"): models.ObservationSubmission,
    ("post", "/v1/observations", "202"): models.ObservationsAccepted,
    ("put", "/v1/reference-data/{reference_data_id}", "request"): models.SeriesConfig,
    ("put", "/v1/reference-data/{reference_data_id}", "200"): models.Series,
    ("get", "/v1/reference-data/{reference_data_id}", "200"): models.Series,
    ("get", "/v1/reference-data", "200"): models.SeriesPage,
    ("put", "/v1/reference-data/{reference_data_id}/descriptor", "request"): models.Descriptor,
    (
        "put",
        "/v1/reference-data/{reference_data_id}/descriptor",
        "200",
    ): models.StoredDescriptor,
    (
        "get",
        "/v1/reference-data/{reference_data_id}/descriptor",
        "200",
    ): models.StoredDescriptor,
    (
        "get",
        "/v1/reference-data/{reference_data_id}/official-values/{snap}",
        "200",
    ): models.OfficialValue,
    (
        "get",
        "/v1/reference-data/{reference_data_id}/official-values/{snap}/versions",
        "200",
    ): models.VersionList,
    ("get", "/v1/reference-data/{reference_data_id}/official-values", "200"): models.HistoryPage,
    ("get", "/v1/reference-data/{reference_data_id}/observations", "200"): models.LineagePage,
    ("get", "/v1/reference-data/{reference_data_id}/quality", "200"): models.QualitySummary,
    ("get", "/health/ready", "200"): models.Readiness,
    ("get", "/health/ready", "503"): models.Readiness,
    ("get", "/health/live", "200"): models.Liveness,
}


@pytest.fixture(scope="module")
def document() -> Schema:
    committed = REPO / "openapi.json"
    if committed.exists():
        decoded: Schema = msgspec.json.decode(committed.read_bytes())
        return decoded
    app = create_app(load_settings({}))
    generated: Schema = msgspec.json.decode(encode_json(app.openapi_schema.to_schema()))
    return generated


def json_bodies(document: Schema) -> dict[tuple[str, str, str], Schema]:
    """Every JSON body of the document; problem+json answers are `Problem`, checked apart."""
    found: dict[tuple[str, str, str], Schema] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found[(method, path, "request")] = content["application/json"]["schema"]
            for status, response in operation["responses"].items():
                for media, body in response.get("content", {}).items():
                    # Health answers are JSON whatever the status; the others' errors are
                    # problem+json.
                    json_body = status.startswith("2") or path.startswith("/health")
                    if media == "application/json" and json_body:
                        found[(method, path, status)] = body["schema"]
    return found


def problem_bodies(document: Schema) -> list[tuple[str, str, str, Schema]]:
    out = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                if status.startswith("2") or path.startswith("/health"):
                    continue
                for body in response.get("content", {}).values():
                    out.append((method, path, status, body["schema"]))
    return out


class Shape:
    """Reduces a JSON schema to what a decoder depends on, resolving `$ref`s."""

    def __init__(self, document: Schema) -> None:
        self.definitions: Schema = document.get("components", {}).get("schemas", {})
        self.definitions.update(document.get("$defs", {}))

    def resolve(self, schema: Schema) -> Schema:
        for _ in range(20):
            ref = schema.get("$ref")
            if ref is None:
                return schema
            schema = self.definitions[ref.rsplit("/", 1)[-1]]
        raise AssertionError("$ref chain too long")

    def of(self, schema: Schema, where: str) -> Any:
        schema = self.resolve(schema)
        alternatives = schema.get("anyOf") or schema.get("oneOf")
        if alternatives:
            shapes = {repr(self.of(a, where)): self.of(a, where) for a in alternatives}
            if len(shapes) == 1:  # `oneOf: [X]` is X
                return next(iter(shapes.values()))
            return ("union", tuple(shapes[k] for k in sorted(shapes)))
        if "const" in schema:
            return ("enum", (schema["const"],))
        if "enum" in schema:
            return ("enum", tuple(sorted(schema["enum"], key=repr)))
        kind = schema.get("type")
        if isinstance(kind, list):
            return self.of({"anyOf": [{**schema, "type": k} for k in kind]}, where)
        if kind == "string":
            return "date-time" if schema.get("format") == "date-time" else "string"
        if kind in ("integer", "number", "boolean", "null"):
            return kind
        if kind == "array":
            if "prefixItems" in schema:
                return ("tuple", tuple(self.of(s, where) for s in schema["prefixItems"]))
            return ("array", self.of(schema.get("items", {}), where))
        if kind == "object" or "properties" in schema:
            if "properties" not in schema:
                extra = schema.get("additionalProperties", {})
                return ("map", self.of(extra if isinstance(extra, dict) else {}, where))
            properties = schema["properties"]
            return (
                "object",
                tuple(sorted((n, self.of(s, f"{where}.{n}")) for n, s in properties.items())),
                tuple(sorted(schema.get("required", []))),
            )
        if not schema or schema == {"examples": schema.get("examples")}:
            return "any"
        raise AssertionError(f"{where}: unhandled schema {schema}")


def struct_shape(struct: type[msgspec.Struct]) -> Any:
    (schema,), components = msgspec.json.schema_components([struct], ref_template="{name}")
    return Shape({"$defs": components}).of(schema, struct.__name__)


def test_every_json_body_of_the_document_has_a_client_struct(document: Schema) -> None:
    assert set(json_bodies(document)) == set(BODIES)


@pytest.mark.parametrize("key", sorted(BODIES), ids=lambda k: " ".join(k))
def test_client_struct_matches_the_document(document: Schema, key: tuple[str, str, str]) -> None:
    served = json_bodies(document)[key]
    assert Shape(document).of(served, " ".join(key)) == struct_shape(BODIES[key])


def test_every_error_body_is_the_client_problem(document: Schema) -> None:
    problems = problem_bodies(document)
    assert len(problems) >= 10
    client = struct_shape(models.Problem)
    shape = Shape(document)
    for method, path, status, schema in problems:
        assert shape.of(schema, f"{method} {path} {status}") == client, (method, path, status)


def test_the_comparison_sees_a_missing_field_and_a_wrong_type(document: Schema) -> None:
    class Broken(msgspec.Struct, kw_only=True):
        accepted: float
        duplicates: int

    served = json_bodies(document)[("post", "/v1/observations", "202")]
    good = struct_shape(models.ObservationsAccepted)
    assert Shape(document).of(served, "202") == good
    assert struct_shape(Broken) != good
