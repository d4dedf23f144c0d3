"""The domain stays pure: stdlib and msgspec imports only, no clock, no randomness, no I/O."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import app.domain

DOMAIN_DIR = Path(app.domain.__file__).parent
MODULES = sorted(DOMAIN_DIR.glob("*.py"))

# Standard-library modules that reach the outside world, the clock or randomness.
IMPURE_STDLIB = {
    "asyncio",
    "http",
    "io",
    "logging",
    "os",
    "pathlib",
    "random",
    "secrets",
    "shutil",
    "socket",
    "sqlite3",
    "subprocess",
    "sys",
    "tempfile",
    "threading",
    "time",
    "urllib",
}
CLOCK_AND_RANDOM_CALLS = {
    "now",
    "utcnow",
    "today",
    "time",
    "time_ns",
    "monotonic",
    "perf_counter",
    "uuid1",
    "uuid4",
}
IO_BUILTINS = {"open", "print", "input", "exec", "eval"}


def violations(source: str) -> list[str]:
    """Every impure import or call in a module's source."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [problem for alias in node.names if (problem := _import_problem(alias.name))]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if problem := _import_problem(node.module):
                found.append(problem)
            if node.module in {"datetime", "time"}:
                found += [
                    f"from {node.module} import {alias.name}"
                    for alias in node.names
                    if alias.name in CLOCK_AND_RANDOM_CALLS
                ]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_AND_RANDOM_CALLS:
                found.append(f"call .{func.attr}()")
            elif isinstance(func, ast.Name) and func.id in IO_BUILTINS:
                found.append(f"call {func.id}()")
    return found


def _import_problem(module: str) -> str | None:
    top = module.split(".")[0]
    if module == "app.domain" or module.startswith("app.domain."):
        return None
    if top == "msgspec":
        return None
    if top not in sys.stdlib_module_names:
        return f"import {module} (not stdlib or msgspec)"
    if top in IMPURE_STDLIB:
        return f"import {module} (I/O, clock or randomness)"
    return None


def test_every_domain_module_is_scanned() -> None:
    names = {path.stem for path in MODULES}

    assert {"observation", "series", "reconciliation", "quality", "versions"} <= names
    assert {"events", "audit", "errors"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_domain_module_is_pure(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import asyncpg", "import asyncpg (not stdlib or msgspec)"),
        ("from app.adapters import memory", "import app.adapters (not stdlib or msgspec)"),
        ("import os.path", "import os.path (I/O, clock or randomness)"),
        ("from time import time", "import time (I/O, clock or randomness)"),
        ("from datetime import datetime\ndatetime.now()", "call .now()"),
        ("import datetime\ndatetime.datetime.utcnow()", "call .utcnow()"),
        ("from datetime import date\ndate.today()", "call .today()"),
        ("import uuid\nuuid.uuid4()", "call .uuid4()"),
        ("open('x')", "call open()"),
    ],
)
def test_the_scan_catches_impurity(source: str, problem: str) -> None:
    assert problem in violations(source)


def test_the_scan_accepts_what_the_domain_may_use() -> None:
    source = (
        "from __future__ import annotations\nimport hashlib\nimport msgspec\n"
        "from datetime import UTC, datetime\nfrom app.domain.series import SeriesConfig\n"
        "import uuid\nuuid.uuid5(uuid.NAMESPACE_URL, 'x')\n"
    )

    assert violations(source) == []
