"""Control of the real local stack (infra/local/stack.sh) from tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STACK = REPO / "infra" / "local" / "stack.sh"


def stack(
    *args: str, timeout: float = 300, env: Mapping[str, str] | None = None, check: bool = True
) -> str:
    """Run `stack.sh ARGS` (with `env` added to the environment); fail the test with the
    script's output when it fails (unless `check` is false)."""
    done = subprocess.run(
        ["bash", str(STACK), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"stack.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout
