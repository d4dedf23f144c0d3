"""The auth hook: headers from LOADTEST_* variables or a callable."""

from __future__ import annotations

import pytest

from loadtests.auth import auth_headers


def staging_token() -> dict[str, str]:
    return {"Authorization": "Bearer from-hook", "X-Tenant": "qis"}


def test_no_configuration_means_no_header() -> None:
    assert auth_headers({"QIS_API__PORT": "8000"}) == {}


def test_a_token_becomes_a_bearer_authorization_header() -> None:
    assert auth_headers({"LOADTEST_AUTH_TOKEN": "abc"}) == {"Authorization": "Bearer abc"}


def test_a_full_header_is_split_on_the_first_colon() -> None:
    headers = auth_headers({"LOADTEST_AUTH_HEADER": "X-Api-Key: k:1"})

    assert headers == {"X-Api-Key": "k:1"}


def test_a_hook_callable_supplies_headers() -> None:
    env = {"LOADTEST_AUTH_HOOK": f"{__name__}:staging_token"}

    assert auth_headers(env) == {"Authorization": "Bearer from-hook", "X-Tenant": "qis"}


@pytest.mark.parametrize(
    "env",
    [
        {"LOADTEST_AUTH_HEADER": "no colon"},
        {"LOADTEST_AUTH_HOOK": "module_without_function"},
        {"LOADTEST_AUTH_TOKEN_URL": "http://127.0.0.1:9/oauth2/token"},
        {"LOADTEST_AUTH_TOKEN_URL": "http://x/oauth2/token", "LOADTEST_AUTH_CLIENT_ID": "c"},
    ],
)
def test_malformed_configuration_is_an_error(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="LOADTEST_AUTH"):
        auth_headers(env)
