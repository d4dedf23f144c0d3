"""The OpenAPI document states the input bounds of app/domain/bounds.py."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar.serialization import encode_json

from app.domain.bounds import MAX_INT32, NO_NUL_PATTERN, TIMESTAMP_PATTERN
from app.domain.series import CONFIGURED_SOURCE_PATTERN
from app.entrypoints.api import create_app
from app.settings import load_settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(load_settings({}))
    decoded: dict[str, Any] = msgspec.json.decode(encode_json(app.openapi_schema.to_schema()))
    return decoded


def parameters(document: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}


def test_observation_fields_state_the_text_and_timestamp_bounds(document: dict[str, Any]) -> None:
    item = document["components"]["schemas"]["SubmittedObservation"]["properties"]
    for name in ("snap", "observed_at"):
        assert item[name]["format"] == "date-time"
        assert item[name]["pattern"] == TIMESTAMP_PATTERN
        assert "1970-01-01T00:00:00Z inclusive" in item[name]["description"]
        assert "2200-01-01T00:00:00Z exclusive" in item[name]["description"]
        assert "15:59" in item[name]["description"]
    assert item["source"]["pattern"] == NO_NUL_PATTERN
    assert "NUL" in item["source"]["description"]
    assert item["observation_id"]["anyOf"][0]["pattern"] == NO_NUL_PATTERN
    attributes = item["attributes"]["anyOf"][0]
    assert attributes["additionalProperties"]["anyOf"][0]["pattern"] == NO_NUL_PATTERN
    assert attributes["propertyNames"]["pattern"] == NO_NUL_PATTERN
    assert item["value"]["exclusiveMaximum"] == 1.7976931348623157e308
    assert item["value"]["exclusiveMinimum"] == -1.7976931348623157e308


def test_series_configuration_states_its_bounds(document: dict[str, Any]) -> None:
    config = document["components"]["schemas"]["SeriesConfig"]["properties"]
    for name in ("expected_sources", "priority"):
        assert config[name]["items"]["pattern"] == CONFIGURED_SOURCE_PATTERN
        assert config[name]["uniqueItems"] is True
    assert config["window_seconds"]["maximum"] == 7 * 86400
    assert config["staleness_seconds"]["maximum"] == 30 * 86400
    assert config["tolerance_bps"]["maximum"] == 1_000_000
    assert config["max_jump_pct"]["anyOf"][0]["maximum"] == 1_000_000
    assert config["precision"]["anyOf"][0]["maximum"] == 12


def test_query_timestamps_and_versions_state_their_bounds(document: dict[str, Any]) -> None:
    one = parameters(document, "/v1/reference-data/{reference_data_id}/official-values/{snap}")
    assert one["snap"]["schema"]["pattern"] == TIMESTAMP_PATTERN
    assert one["snap"]["schema"]["format"] == "date-time"
    assert one["as_of"]["schema"]["pattern"] == TIMESTAMP_PATTERN
    assert one["version"]["schema"]["maximum"] == MAX_INT32
    history = parameters(document, "/v1/reference-data/{reference_data_id}/official-values")
    for name in ("from", "to", "as_of"):
        assert "1970-01-01T00:00:00Z inclusive" in history[name]["description"]
