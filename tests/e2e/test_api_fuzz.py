"""No input is a server error: schemathesis against the running `qis api`.

Every operation of the OpenAPI document is driven with generated requests, valid and
invalid ones (bodies, path and query parameters, NUL characters included), against the
real api, PostgreSQL, Kafka and Redis. Any 5xx fails the test with a `curl` line that
reproduces it. The example count per operation is bounded so the file runs in well
under a minute; `schemathesis run` (docs/bounds.md) explores further.

The document is built in-process at collection (pytest parametrizes before the api
fixture runs; schemathesis' lazy `from_fixture` loader does not work with pytest 9), and
`test_the_served_document_is_the_fuzzed_one` checks the running api serves that same one.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar.serialization import encode_json
from schemathesis.checks import not_a_server_error

from app.entrypoints.api import create_app
from app.settings import load_settings

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 30

DOCUMENT: dict[str, Any] = msgspec.json.decode(
    encode_json(create_app(load_settings({})).openapi_schema.to_schema())
)
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(allow_x00=True, database="none")


def without_examples(node: Any) -> Any:
    """The document minus `examples`: Litestar draws response examples at random."""
    if isinstance(node, dict):
        return {k: without_examples(v) for k, v in node.items() if k != "examples"}
    if isinstance(node, list):
        return [without_examples(v) for v in node]
    return node


def test_the_served_document_is_the_fuzzed_one(api: str) -> None:
    served = httpx.get(f"{api}/schema/openapi.json", timeout=10).json()
    assert without_examples(served) == without_examples(DOCUMENT)
    assert "/v1/observations" in DOCUMENT["paths"]
    assert len(DOCUMENT["paths"]) == 10


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_is_a_server_error(api: str, case: schemathesis.Case) -> None:
    response = case.call_and_validate(base_url=api, checks=[not_a_server_error], timeout=10)
    assert response.status_code < 500
