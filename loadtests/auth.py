"""The auth hook: headers every load-test request carries (staging sits behind auth).

Configured from the environment (never `QIS_*`: those belong to the service's settings):

- `LOADTEST_AUTH_HEADER="Name: value"`: one fixed header, e.g.
  `LOADTEST_AUTH_HEADER="Authorization: Bearer eyJ..."`;
- `LOADTEST_AUTH_TOKEN=...`: shorthand for `Authorization: Bearer <token>`;
- `LOADTEST_AUTH_HOOK=package.module:function`: a callable returning a mapping of headers,
  called when each simulated user starts (so a hook can fetch or refresh a token).

With none of them set, requests carry no auth header (the local stack needs none).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping


def _hook(spec: str) -> Callable[[], Mapping[str, str]]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"LOADTEST_AUTH_HOOK must be 'module:function', got {spec!r}")
    hook = getattr(importlib.import_module(module_name), attribute)
    if not callable(hook):
        raise TypeError(f"LOADTEST_AUTH_HOOK {spec!r} is not callable")
    return hook  # type: ignore[no-any-return]


def auth_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers the configured hook asks for (empty without configuration)."""
    env = os.environ if environ is None else environ
    headers: dict[str, str] = {}
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
