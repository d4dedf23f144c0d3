"""The committed openapi.json is the document the app serves, with stable ids and examples."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from app.api.routes.reference_data import decode_config
from app.domain import descriptor
from app.domain.series import CONFIGURED_SOURCE_PATTERN, SeriesConfig, validate_series_config
from app.entrypoints import openapi_export


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_export.document()


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for path in document["paths"].values() for op in path.values()}


def test_the_committed_document_is_the_generated_one(document: dict[str, Any]) -> None:
    committed = openapi_export.DEFAULT_PATH.read_text()
    assert committed == openapi_export.render(document), (
        f"openapi.json is stale: regenerate it with `{openapi_export.COMMAND}`"
    )


def test_the_committed_descriptor_schema_is_the_generated_one() -> None:
    committed = openapi_export.DESCRIPTOR_SCHEMA_PATH.read_text()
    assert committed == openapi_export.render(descriptor.schema()), (
        f"docs/descriptor.schema.json is stale: regenerate it with `{openapi_export.COMMAND}`"
    )
    # What the api validates against is what the schema says: bounds and closed objects.
    defs = descriptor.schema()["$defs"]
    assert all(d["additionalProperties"] is False for d in defs.values())
    assert defs["Descriptor"]["properties"]["vendor_symbols"]["maxItems"] == 64


def test_the_document_is_the_same_on_every_build(document: dict[str, Any]) -> None:
    assert openapi_export.render(openapi_export.document()) == openapi_export.render(document)


def test_operation_ids_are_short_and_stable(document: dict[str, Any]) -> None:
    assert sorted(operations(document)) == [
        "getDescriptor",
        "getHistory",
        "getLineage",
        "getLiveness",
        "getOfficialValue",
        "getQuality",
        "getReadiness",
        "getSeries",
        "getVersions",
        "listSeries",
        "postObservations",
        "putDescriptor",
        "putSeries",
    ]


def test_every_v1_error_is_documented_as_problem_json(document: dict[str, Any]) -> None:
    for path, methods in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for op in methods.values():
            errors = {code: r for code, r in op["responses"].items() if code >= "400"}
            assert {"400", "500", "503"} <= set(errors), op["operationId"]
            for code, response in errors.items():
                (media_type,) = response["content"]
                assert media_type == "application/problem+json", (op["operationId"], code)
                assert response["content"][media_type]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
                (example,) = response["content"][media_type]["examples"].values()
                assert example["value"]["status"] == int(code)


def test_examples_are_the_worked_example(document: dict[str, Any]) -> None:
    official = operations(document)["getOfficialValue"]["responses"]["200"]
    (example,) = official["content"]["application/json"]["examples"].values()
    assert example["value"]["reference_data_id"] == "ETH-USD"
    assert example["value"]["snap"] == "2026-01-15T14:00:00Z"
    assert example["value"]["value"] == 100.0
    assert example["value"]["sources_used"] == ["A", "B", "C"]
    assert example["value"]["quality"]["score"] == 1.0
    body = operations(document)["postObservations"]["requestBody"]["content"]
    (submission,) = body["application/json"]["examples"].values()
    assert [o["value"] for o in submission["value"]["observations"]] == [100.0, 100.02, 99.99]
    # No generated example anywhere: no random words, no naive timestamps.
    text = msgspec.json.encode(document).decode()
    assert not re.search(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?"', text)


@pytest.mark.parametrize(
    "name",
    ["a", "kraken", "a b", "x" * 64, " a", "a ", "\ta", "a\n", "\u00a0a", "a\u3000", "\x85"],
)
def test_the_source_pattern_agrees_with_the_domain_rule(name: str) -> None:
    by_pattern = re.fullmatch(CONFIGURED_SOURCE_PATTERN, name) is not None
    by_domain = not validate_series_config(SeriesConfig(expected_sources=(name,)))
    assert by_pattern == by_domain


def test_integral_floats_are_integers() -> None:
    config = decode_config(b'{"min_sources": 2.0, "window_seconds": 60.0, "precision": 2.0}')
    assert (config.min_sources, config.window_seconds, config.precision) == (2, 60, 2)
    assert isinstance(config.min_sources, int)
    assert config.tolerance_bps == 50.0
