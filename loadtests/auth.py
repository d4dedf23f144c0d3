"""The auth hook: headers every load-test request carries (staging sits behind auth).

Configured from the environment (never `QIS_*`: those belong to the service's settings):

- `LOADTEST_AUTH_HEADER="Name: value"`: one fixed header, e.g.
  `LOADTEST_AUTH_HEADER="Authorization: Bearer eyJ..."`;
- `LOADTEST_AUTH_TOKEN=...`: shorthand for `Authorization: Bearer <token>`;
- `LOADTEST_AUTH_HOOK=package.module:function`: a callable returning a mapping of headers,
  called when each simulated user starts (so a hook can fetch or refresh a token);
- `LOADTEST_AUTH_TOKEN_URL=https://<domain>.auth.<region>.amazoncognito.com/oauth2/token`
  with `LOADTEST_AUTH_CLIENT_ID`, `LOADTEST_AUTH_CLIENT_SECRET` and optionally
  `LOADTEST_AUTH_SCOPES` (space separated; default: every scope of the client): OAuth2
  client credentials, as qis-client's `client_credentials` provider. Every simulated user
  shares one token, fetched again shortly before it expires and when the api answers
  401. Locally: `http://127.0.0.1:58080/oauth2/token` with a client of
  `.local/auth/clients.json` (`make run` starts that issuer).

With none of them set, requests carry no auth header.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping

from qis_client import BearerAuth, client_credentials


def _hook(spec: str) -> Callable[[], Mapping[str, str]]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"LOADTEST_AUTH_HOOK must be 'module:function', got {spec!r}")
    hook = getattr(importlib.import_module(module_name), attribute)
    if not callable(hook):
        raise TypeError(f"LOADTEST_AUTH_HOOK {spec!r} is not callable")
    return hook  # type: ignore[no-any-return]


_shared: dict[tuple[str, ...], BearerAuth] = {}


def bearer_auth(environ: Mapping[str, str] | None = None) -> BearerAuth | None:
    """qis-client's bearer auth over the client-credentials provider configured by
    LOADTEST_AUTH_TOKEN_URL (one per configuration and process, shared by every simulated
    user: one token, refreshed before it expires and once after a 401), or None."""
    env = os.environ if environ is None else environ
    url = env.get("LOADTEST_AUTH_TOKEN_URL")
    if not url:
        return None
    client_id = env.get("LOADTEST_AUTH_CLIENT_ID", "")
    secret = env.get("LOADTEST_AUTH_CLIENT_SECRET", "")
    if not client_id or not secret:
        raise ValueError(
            "LOADTEST_AUTH_TOKEN_URL needs LOADTEST_AUTH_CLIENT_ID and LOADTEST_AUTH_CLIENT_SECRET"
        )
    scopes = tuple(env.get("LOADTEST_AUTH_SCOPES", "").split())
    key = (url, client_id, secret, *scopes)
    if key not in _shared:
        _shared[key] = BearerAuth(client_credentials(url, client_id, secret, scopes))
    return _shared[key]


def auth_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers the configured hook asks for (empty without configuration)."""
    env = os.environ if environ is None else environ
    headers: dict[str, str] = {}
    if (auth := bearer_auth(env)) is not None:
        headers["Authorization"] = f"Bearer {auth.current().access_token}"
    if token := env.get("LOADTEST_AUTH_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    if header := env.get("LOADTEST_AUTH_HEADER"):
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise ValueError("LOADTEST_AUTH_HEADER must look like 'Name: value'")
        headers[name.strip()] = value.strip()
    if spec := env.get("LOADTEST_AUTH_HOOK"):
        headers.update(_hook(spec)())
    return headers
