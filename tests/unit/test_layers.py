"""The service's layers, from its import graph (every import, lazy ones included).

- `app.domain` imports nothing of the project but the domain (no I/O: see
  tests/unit/domain/test_purity.py for the standard library side);
- `app.ports` imports only the domain;
- `app.services` import only the domain, the ports and other services;
- adapters (`app.adapters`, `app.telemetry`) never import services, the HTTP layer or
  the entry points;
- the HTTP layer (`app.api`) builds no adapter: it gets them from `app.entrypoints`;
- only `app.entrypoints` composes; nothing imports it but itself;
- no module imports itself back through others (no cycles).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"

# Layer of a module -> the layers of the project it may import.
ALLOWED: dict[str, set[str]] = {
    "domain": {"domain"},
    "ports": {"domain"},
    "services": {"domain", "ports", "services"},
    "settings": set(),
    "adapters": {"domain", "ports", "settings", "adapters", "telemetry"},
    "telemetry": {"domain", "ports", "settings", "telemetry"},
    "api": {"domain", "ports", "services", "settings", "telemetry", "api"},
    "entrypoints": {
        "domain",
        "ports",
        "services",
        "settings",
        "adapters",
        "telemetry",
        "api",
        "entrypoints",
    },
}


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """`app.services.consume` -> `services`; `app.ports` -> `ports`."""
    return module.split(".")[1] if module.count(".") >= 1 else "app"


def imports(path: Path) -> set[str]:
    """The project modules `path` imports (`from app.x import y` counts `app.x` and
    `app.x.y` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("app."))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and (node.module == "app" or node.module.startswith("app."))
        ):
            found.add(node.module)
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if f"{node.module}.{a.name}" in MODULES
            )
    return {m for m in found if m != "app"}


PATHS = sorted(APP.rglob("*.py"))
MODULES = {module_name(p): p for p in PATHS}
GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 60
    assert {layer(m) for m in MODULES} - {"app"} <= set(ALLOWED)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "app"))
def test_imports_follow_the_layers(module: str) -> None:
    allowed = ALLOWED[layer(module)]
    wrong = sorted(i for i in GRAPH[module] if layer(i) not in allowed)
    assert wrong == [], f"{module} ({layer(module)}) may import only {sorted(allowed)}"


def test_no_import_cycles() -> None:
    """Depth-first search for a back edge among module-level project imports."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH.get(module, ())):
            target = target if target in MODULES else target.rsplit(".", 1)[0]
            if target not in MODULES or target == module:
                continue
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)
    assert cycles == []


def test_the_rules_can_fail(tmp_path: Path) -> None:
    """The scanner sees a forbidden import where the rules look for one."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from app.adapters.postgres import pipeline\n")
    assert "app.adapters.postgres" in imports(module)
    assert layer("app.adapters.postgres") not in ALLOWED["services"]
