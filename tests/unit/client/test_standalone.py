"""The client stands alone: it imports the standard library, httpx and msgspec, never the
service (so `pip install ./client` is all a user needs)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[3] / "client"
ALLOWED = {"httpx", "msgspec", "qis_client"}


def test_the_client_imports_only_the_standard_library_httpx_and_msgspec() -> None:
    found: dict[str, str] = {}
    files = sorted((CLIENT / "qis_client").rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ALLOWED:
                    found[f"{path.name}: {name}"] = top
    assert found == {}


def test_the_package_declares_only_httpx_and_msgspec() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "qis-client"
    assert sorted(d.split(">")[0].split("=")[0] for d in project["dependencies"]) == [
        "httpx",
        "msgspec",
    ]


def test_importing_the_client_loads_nothing_of_the_service() -> None:
    code = (
        "import sys, qis_client, qis_client.aio; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('app', 'litestar')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
