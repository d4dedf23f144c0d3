"""Cognito user-pool tokens (the other shape Cognito issues), from a moto server.

moto (server mode) implements the user-pool APIs and signs RS256 tokens for a user
sign-in (`ADMIN_USER_PASSWORD_AUTH`) with its pool's JWKS; it has no OAuth2 token
endpoint (client credentials), which `qis dev issuer` covers. The verifier checks moto's
tokens with the same code: the pool's issuer, the JWKS moto serves, `token_use`.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.adapters.jwt_verifier import JwtVerifier
from app.api.auth import Gate, access_check
from app.ports import Unauthenticated
from app.settings import AuthSettings
from tests.integration.test_ops_moto import moto_url, running_stack
from tests.unit.api.test_bounds_at_the_edge import MemoryLog, edge_app
from tests.unit.services.fakes import FakeDatabase

__all__ = ["moto_url", "running_stack"]  # fixtures: a moto server, no PostgreSQL/Kafka
pytestmark = pytest.mark.integration
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def signed_in(moto_url: str) -> dict[str, Any]:
    """A pool, an app client and a user, signed in: its tokens and the pool's ids."""
    idp = boto3.client(
        "cognito-idp",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pool = idp.create_user_pool(PoolName="qis-test")["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool, ClientName="strategy", ExplicitAuthFlows=["ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    idp.admin_create_user(UserPoolId=pool, Username="alice", TemporaryPassword="Temp-Pass-1")
    idp.admin_set_user_password(
        UserPoolId=pool, Username="alice", Password="Real-Pass-12", Permanent=True
    )
    tokens = idp.admin_initiate_auth(
        UserPoolId=pool,
        ClientId=client,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "alice", "PASSWORD": "Real-Pass-12"},
    )["AuthenticationResult"]
    return {"pool": pool, "client": client, **tokens}


def verifier(moto_url: str, pool: str, **changes: Any) -> JwtVerifier:
    settings: dict[str, Any] = {
        "issuer": f"https://cognito-idp.{REGION}.amazonaws.com/{pool}",
        "jwks_url": f"{moto_url}/{pool}/.well-known/jwks.json",
    }
    return JwtVerifier(AuthSettings(**(settings | changes)))


async def test_a_user_access_token_names_the_client_and_the_user(
    moto_url: str, signed_in: dict[str, Any]
) -> None:
    principal = await verifier(moto_url, signed_in["pool"]).verify(signed_in["AccessToken"])
    assert principal.client_id == signed_in["client"]
    assert principal.username == "alice"
    assert principal.actor == f"{signed_in['client']}/alice"
    assert principal.scopes == frozenset({"aws.cognito.signin.user.admin"})


async def test_an_id_token_and_another_pools_token_are_refused(
    moto_url: str, signed_in: dict[str, Any]
) -> None:
    # An ID token has `aud` instead of `client_id`, and `token_use: id`.
    with pytest.raises(Unauthenticated, match=r"MissingRequiredClaimError|not an access token"):
        await verifier(moto_url, signed_in["pool"]).verify(signed_in["IdToken"])
    other = verifier(moto_url, signed_in["pool"], issuer="https://cognito-idp.x/other")
    with pytest.raises(Unauthenticated, match="token rejected"):
        await other.verify(signed_in["AccessToken"])
    only_others = verifier(moto_url, signed_in["pool"], client_ids="some-other-client")
    with pytest.raises(Unauthenticated, match="client not accepted"):
        await only_others.verify(signed_in["AccessToken"])


async def test_a_user_token_without_the_resource_scopes_is_a_403(
    moto_url: str, signed_in: dict[str, Any]
) -> None:
    gate = Gate(verifier(moto_url, signed_in["pool"]), None)
    app: Litestar = edge_app(MemoryLog(), FakeDatabase(), access_check(lambda: gate))
    async with AsyncTestClient(app) as client:
        response = await client.get(
            "/v1/reference-data/ETH-USD",
            headers={"Authorization": f"Bearer {signed_in['AccessToken']}"},
        )
    assert response.status_code == 403
    assert response.json()["detail"] == "the token does not grant the scope qis/read"
