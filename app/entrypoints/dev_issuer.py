"""`qis dev issuer`: a local OAuth2 issuer with Cognito's client-credentials token shape.

For local runs and tests only. Amazon Cognito issues the api's tokens in staging and
production; the api checks both with the same code (app/adapters/jwt_verifier.py), only
`QIS_AUTH__ISSUER` differs. It serves:

- `POST /oauth2/token`: `grant_type=client_credentials`, the client authenticated by
  HTTP Basic (`client_id:client_secret`) or by the form fields `client_id` and
  `client_secret`, `scope` optional (space separated; default: every scope of the
  client), as Cognito's token endpoint;
- `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration`.

Its tokens carry exactly the claims of a Cognito access token issued to an app client:
`sub` (= the client id), `client_id`, `token_use: access`, `scope`, `auth_time`, `iss`,
`exp`, `iat`, `jti`, `version`, signed RS256 with a key whose `kid` is in the JWKS.

State (created on first start, kept afterwards) lives in one directory, `.local/auth` by
default: `issuer-key.pem` (RSA 2048, mode 0600) and `clients.json`, the app clients with
their secrets and allowed scopes: `qis-local-admin` (every scope), `qis-local-ingest`
(qis/ingest) and `qis-local-reader` (qis/read).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import Litestar, Request, Response, get, post

from app.api.auth import ADMIN, INGEST, READ

DEFAULT_DIR = Path(".local/auth")
DEFAULT_PORT = 58080
TOKEN_SECONDS = 3600
DEFAULT_CLIENTS: dict[str, list[str]] = {
    "qis-local-admin": [INGEST, READ, ADMIN],
    "qis-local-ingest": [INGEST],
    "qis-local-reader": [READ],
}


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    scopes: tuple[str, ...]


class LocalIssuer:
    """The issuer's key and clients (created in `state_dir` when missing) and its tokens."""

    def __init__(self, state_dir: Path, url: str) -> None:
        self.url = url.rstrip("/")
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        key_file = state_dir / "issuer-key.pem"
        if not key_file.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(pem)
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        self.private_key = loaded
        self.public_jwk: dict[str, Any] = json.loads(
            jwt.algorithms.RSAAlgorithm.to_jwk(loaded.public_key())
        )
        numbers = f"{self.public_jwk['e']}{self.public_jwk['n']}".encode()
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(numbers).digest()[:12]).decode()
        self.public_jwk.update(kid=self.kid, alg="RS256", use="sig")
        self.clients = _clients(state_dir / "clients.json")

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/.well-known/jwks.json",
            "token_endpoint": f"{self.url}/oauth2/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": sorted({s for c in self.clients.values() for s in c.scopes}),
        }

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, secret):
            return None
        return client

    def mint(
        self, client_id: str, scopes: list[str], /, *, seconds: int = TOKEN_SECONDS, **claims: Any
    ) -> str:
        """A signed access token with Cognito's client-credentials claims (`claims` override)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": client_id,
            "token_use": "access",
            "scope": " ".join(scopes),
            "auth_time": now,
            "iss": self.url,
            "exp": now + seconds,
            "iat": now,
            "version": 2,
            "jti": str(uuid.uuid4()),
            "client_id": client_id,
        }
        payload.update(claims)
        return jwt.encode(payload, self.private_key, algorithm="RS256", headers={"kid": self.kid})


def _clients(path: Path) -> dict[str, Client]:
    """The app clients of `path`, created with fresh secrets when it does not exist."""
    if not path.exists():
        document = {
            client_id: {"client_secret": secrets.token_urlsafe(24), "scopes": scopes}
            for client_id, scopes in DEFAULT_CLIENTS.items()
        }
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(document, out, indent=2)
    document = json.loads(path.read_text())
    return {
        client_id: Client(client_id, entry["client_secret"], tuple(entry["scopes"]))
        for client_id, entry in document.items()
    }


def _oauth_error(status: int, error: str) -> Response[dict[str, str]]:
    headers = {"WWW-Authenticate": 'Basic realm="qis-dev-issuer"'} if status == 401 else {}
    return Response({"error": error}, status_code=status, headers=headers)


def _credentials(request: Request[Any, Any, Any], form: dict[str, Any]) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "", ""
        return client_id, secret
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))


def issuer_app(issuer: LocalIssuer) -> Litestar:
    """The issuer's HTTP routes."""

    @post("/oauth2/token", status_code=200)
    async def token(request: Request[Any, Any, Any]) -> Response[Any]:
        form = dict(await request.form())
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type")
        client = issuer.authenticate(*_credentials(request, form))
        if client is None:
            return _oauth_error(401, "invalid_client")
        requested = str(form.get("scope", "")).split()
        if any(scope not in client.scopes for scope in requested):
            return _oauth_error(400, "invalid_scope")
        access_token = issuer.mint(client.client_id, requested or list(client.scopes))
        return Response(
            {"access_token": access_token, "expires_in": TOKEN_SECONDS, "token_type": "Bearer"},
            headers={"Cache-Control": "no-store"},
        )

    @get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        return issuer.jwks()

    @get("/.well-known/openid-configuration")
    async def openid_configuration() -> dict[str, Any]:
        return issuer.openid_configuration()

    return Litestar(route_handlers=[token, jwks, openid_configuration], openapi_config=None)


def serve(host: str, port: int, state_dir: Path, url: str | None = None) -> None:
    """Run the issuer in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    issuer = LocalIssuer(state_dir, url or f"http://{host}:{port}")
    print(  # noqa: T201 (a CLI's start line)
        f"qis dev issuer: {issuer.url} (clients and secrets: {state_dir / 'clients.json'})",
        flush=True,
    )
    uvicorn.run(issuer_app(issuer), host=host, port=port, log_level="warning")


def request_token(
    url: str, client_id: str, secret: str, scopes: list[str], timeout: float = 10.0
) -> dict[str, Any]:
    """Ask the token endpoint of `url` (the local issuer or Cognito's domain) for a token."""
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode(
        {"grant_type": "client_credentials", **({"scope": " ".join(scopes)} if scopes else {})}
    ).encode()
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 (the operator's URL)
        f"{url.rstrip('/')}/oauth2/token",
        data=body,
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        document: dict[str, Any] = json.loads(response.read())
    return document
