"""QIS_API__MAX_BODY_BYTES is the body limit of every route: a larger body is a 413
(the app runs its lifespan, so it needs the local stack)."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import TestClient

from app.entrypoints.api import create_app
from app.settings import ApiSettings, Settings
from tests.auth import auth_settings, bearer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("limit", "status"), [(1_000, 413), (1_000_000, 422)])
def test_the_configured_limit_is_the_one_enforced(limit: int, status: int) -> None:
    settings = msgspec.structs.replace(
        auth_settings(Settings()), api=ApiSettings(max_body_bytes=limit)
    )
    # ~5 KB of JSON that is not a valid submission: 422 when it may be read, else 413.
    body = b'{"observations": [' + b",".join([b'{"x": 1}'] * 600) + b"]}"
    with TestClient(app=create_app(settings)) as client:
        response = client.post(
            "/v1/observations",
            content=body,
            headers={"content-type": "application/json", **bearer()},
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
