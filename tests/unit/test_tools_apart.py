"""The service and its tools stay apart.

`app/` is the service; `ops/` (CloudWatch as code), `alarms/`, `dashboards/` and
`benchmarks/sizing/` are tools that may import the service, never the reverse. Among the
tools the layers run one way, ops <- alarms <- dashboards, so no import loop can form.
Running a service command loads no tool code and none of the tools' dependencies.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL_PACKAGES = ("ops", "alarms", "dashboards", "benchmarks", "loadtests", "tests")
# Each tool package and the top-level packages of this repository it may import.
ALLOWED = {
    "ops": {"ops", "app"},
    "alarms": {"alarms", "ops", "app"},
    "dashboards": {"dashboards", "alarms", "ops", "app"},
    "benchmarks/sizing": {"benchmarks", "app"},
}
PROJECT_PACKAGES = {"app", *TOOL_PACKAGES}
# Imported by the tools only (the `tools` extra, and the test dependencies).
# (boto3 is the service's too: Secrets Manager and IAM tokens, app/adapters/aws_auth.py.)
# `qis ingest` imports the client (the `ingest` extra) only when it runs. (pyarrow is the
# service's too: the data lake's Parquet, app/adapters/lake_formats.py.)
TOOL_ONLY_MODULES = ("matplotlib", "moto", "jsonschema", "qis_client")


def imported_packages(path: Path) -> dict[str, int]:
    """Top-level package of every absolute import in `path` (lazy ones too) -> its line."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name.split(".")[0], node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.setdefault(node.module.split(".")[0], node.lineno)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_every_folder_is_scanned() -> None:
    assert len(modules("app")) > 50
    for folder in ALLOWED:
        assert modules(folder), folder
    assert (ROOT / "ops" / "alarm.py") in modules("ops")
    assert (ROOT / "benchmarks" / "sizing" / "model.py") in modules("benchmarks/sizing")


@pytest.mark.parametrize("path", modules("app"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_service_imports_no_tool(path: Path) -> None:
    tools = {name: line for name, line in imported_packages(path).items() if name in TOOL_PACKAGES}
    assert tools == {}


@pytest.mark.parametrize(
    ("folder", "path"),
    [(folder, path) for folder in ALLOWED for path in modules(folder)],
    ids=lambda value: str(value.relative_to(ROOT)) if isinstance(value, Path) else value,
)
def test_tools_import_only_the_layers_below(folder: str, path: Path) -> None:
    project = {name for name in imported_packages(path) if name in PROJECT_PACKAGES}
    assert project <= ALLOWED[folder]


def test_the_scan_sees_lazy_and_dotted_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os.path\nfrom . import sibling\n"
        "def f():\n    from dashboards.render import render_review\n    import ops.emf\n"
    )
    assert imported_packages(module) == {"os": 1, "dashboards": 4, "ops": 5}


PROBE = """
import importlib, pkgutil, sys
import app, app.entrypoints.cli
for argv in {commands!r}:
    app.entrypoints.cli.build_parser(argv).parse_args(argv)
for info in pkgutil.walk_packages(app.__path__, "app."):
    importlib.import_module(info.name)
print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}})))
"""
SERVICE_COMMANDS = [
    ["api"],
    ["worker"],
    ["scheduler"],
    ["db", "migrate"],
    ["kafka", "topics"],
    ["audit", "verify"],
    ["dlq", "list"],
]


def test_service_commands_load_no_tool_code_nor_its_dependencies() -> None:
    """Every module of app/ imported and every service command parsed: no tool package
    and no tool-only dependency is in sys.modules (a runtime install need not have them)."""
    probe = PROBE.format(commands=SERVICE_COMMANDS)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    assert {"app", "msgspec", "asyncpg"} <= loaded  # the probe did import the service
    assert loaded & {*TOOL_PACKAGES, *TOOL_ONLY_MODULES} == set()


MISSING = """
import sys
sys.modules[{module!r}] = None  # as if the `tools` extra were not installed
from app.entrypoints.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        (
            "matplotlib",
            ["dashboards", "render", "--metrics", "{recording}", "--out", "{out}"],
            "tools",
        ),
        ("botocore", ["alarms", "test"], "tools"),
        ("qis_client", ["ingest", "{recording}", "--format", "jsonl"], "ingest"),
        ("pyarrow", ["ingest", "{recording}", "--format", "parquet"], "ingest"),
    ],
)
def test_a_tool_without_its_extra_says_so_in_one_line(
    module: str, argv: list[str], extra: str, tmp_path: Path
) -> None:
    recording = tmp_path / "recording.jsonl"
    recording.write_text("{}\n")
    argv = [arg.format(recording=recording, out=tmp_path / "out") for arg in argv]
    result = subprocess.run(
        [sys.executable, "-c", MISSING.format(module=module, argv=argv)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"qis {argv[0]}: needs the optional '{extra}' dependencies")
    assert f"no module '{module}'" in line
    assert f"uv sync --extra {extra}" in line


def test_a_tool_command_with_its_extra_runs() -> None:
    from app.entrypoints.cli import main

    assert main(["dashboards", "generate", "--check"]) == 0
