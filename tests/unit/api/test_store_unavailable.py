"""A store that does not answer is a 503 with Retry-After; any other error a bare 500."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
from litestar.testing import RequestFactory

from app.entrypoints.api import _unavailable_or_unexpected


@pytest.mark.parametrize(
    "exc",
    [
        OSError("connection refused"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    ],
)
def test_an_unreachable_store_is_503_with_retry_after(exc: Exception) -> None:
    response = _unavailable_or_unexpected(7)(RequestFactory().get("/v1/x"), exc)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    body = msgspec.json.decode(response.content)
    assert (body["status"], body["title"]) == (503, "Service Unavailable")


def test_anything_else_is_a_500_that_leaks_nothing() -> None:
    response = _unavailable_or_unexpected(7)(
        RequestFactory().get("/v1/x"), ValueError("secret detail")
    )

    assert response.status_code == 500
    assert b"secret detail" not in response.content
    assert "Retry-After" not in response.headers
