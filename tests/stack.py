"""Control of the real local stack (infra/local/stack.sh) from tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STACK = REPO / "infra" / "local" / "stack.sh"


def stack(*args: str, timeout: float = 300) -> str:
    """Run `stack.sh ARGS`; fail the test with the script's output when it fails."""
    done = subprocess.run(
        ["bash", str(STACK), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"stack.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout
