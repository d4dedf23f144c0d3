"""The api keeps its contract: schemathesis, every check, against the running `qis api`.

Every operation of the committed openapi.json is driven with generated requests, valid
and invalid ones (bodies, path and query parameters, NUL characters included), against
the real api, PostgreSQL, Kafka and Redis, and every response is checked against the
document: no 5xx, documented status, content type, schema and headers, valid data
accepted, invalid data refused, `Allow` on OPTIONS and 405, and authentication enforced
(schemathesis' `ignored_auth` re-sends requests without the token and with a bad one).
Two profiles: authenticated (a token with every scope from the local issuer) and
unauthenticated (no token: every /v1 operation is a documented 401). A failure comes with a `curl`
line that reproduces it. schemathesis.toml (read here as by `schemathesis run`) lists the
refusals the document cannot express (rules spanning several parameters). The example
count per operation is bounded so the file runs in about a minute; `schemathesis run`
(docs/api.md, "Contract") explores further.

The document is read at collection (pytest parametrizes before the api fixture runs), and
`test_the_served_document_is_the_committed_one` checks the running api serves that one.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import bearer
from tests.stack import REPO

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 30

DOCUMENT: dict[str, Any] = json.loads((REPO / "openapi.json").read_text())
schema = schemathesis.openapi.from_dict(
    DOCUMENT, config=SchemathesisConfig.from_path(REPO / "schemathesis.toml")
)
schema.config.generation.update(allow_x00=True, database="none")


def test_the_served_document_is_the_committed_one(api: str) -> None:
    served = httpx.get(f"{api}/schema/openapi.json", timeout=10).json()
    assert served == DOCUMENT
    assert "/v1/observations" in DOCUMENT["paths"]
    assert len(DOCUMENT["paths"]) == 11


@pytest.fixture(scope="module")
def authorization() -> dict[str, str]:
    return bearer()  # qis-local-admin: every scope


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_response_keeps_the_contract(
    api: str, authorization: dict[str, str], case: schemathesis.Case
) -> None:
    response = case.call_and_validate(base_url=api, timeout=10, headers=authorization)
    assert response.status_code < 500


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION // 3,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_without_a_token_every_v1_operation_is_a_documented_401(
    api: str, case: schemathesis.Case
) -> None:
    response = case.call(base_url=api, timeout=10)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
    if not case.path.startswith("/v1") or case.method.upper() != case.operation.method.upper():
        # Open routes; and OPTIONS (204, open) or a method the path lacks (405), which
        # routing answers before any route's guard.
        assert response.status_code in (200, 204, 405) or not case.path.startswith("/v1")
        return
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == ['Bearer realm="qis"']
    assert response.json()["detail"] == "missing bearer token"
