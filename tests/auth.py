"""Tokens for tests that call the api: the local issuer's key and app clients.

The api under test checks tokens as in production (`QIS_AUTH__ENABLED` stays true). The
issuer's state (key, app clients) lives in `.local/test-auth/`, created on first use:

- in-process apps (`create_app(settings)` with a test client) read its JWKS from a file
  (`QIS_AUTH__JWKS_URL=file://...`) and get tokens signed here with `bearer()`;
- e2e tests run `qis dev issuer` over HTTP on that state (tests/e2e/conftest.py) and get
  tokens from its token endpoint, as a client does.
"""

from __future__ import annotations

import functools
import json

import msgspec

from app.api.auth import ADMIN, INGEST, READ
from app.entrypoints.dev_issuer import LocalIssuer
from app.settings import Settings
from tests.stack import REPO

STATE = REPO / ".local" / "test-auth"
# Never fetched: in-process apps read the JWKS file; only the `iss` claim names it.
IN_PROCESS_ISSUER = "http://127.0.0.1:9/qis-test-issuer"
ALL_SCOPES = (INGEST, READ, ADMIN)


@functools.cache
def issuer(url: str = IN_PROCESS_ISSUER) -> LocalIssuer:
    local = LocalIssuer(STATE, url)
    jwks = STATE / "jwks.json"
    text = json.dumps(local.jwks())
    if not jwks.exists() or jwks.read_text() != text:
        jwks.write_text(text)
    return local


def jwks_url() -> str:
    issuer()
    return (STATE / "jwks.json").as_uri()


def auth_settings(settings: Settings) -> Settings:
    """`settings` checking the in-process issuer's tokens."""
    auth = msgspec.structs.replace(settings.auth, issuer=IN_PROCESS_ISSUER, jwks_url=jwks_url())
    return msgspec.structs.replace(settings, auth=auth)


def bearer(*scopes: str, client_id: str = "qis-local-admin", **claims: object) -> dict[str, str]:
    """An Authorization header with an in-process issuer's token (every scope by default)."""
    token = issuer().mint(client_id, list(scopes or ALL_SCOPES), **claims)
    return {"Authorization": f"Bearer {token}"}
