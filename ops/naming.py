"""Per-environment names and values of the dashboards and alarms.

The definitions are written once, for every environment: names start with
`qis-${Environment}-` (the data-plane stacks' scheme: `qis-staging-alarms`,
`qis-prod-DataKeyArn`), every Custom/QIS metric is filtered by the `Environment`
dimension the service records (`QIS_TELEMETRY__ENVIRONMENT`), and each alarm's
description ends with its runbook under `${RunbookBaseUrl}`. CloudFormation fills the
placeholders with `Fn::Sub`; `qis ... deploy --environment` and the offline evaluator
with `resolve`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

ENVIRONMENT = "${Environment}"
PREFIX = f"qis-{ENVIRONMENT}-"
RUNBOOK_BASE_URL = "${RunbookBaseUrl}"
# Repository-relative: the runbooks are docs/runbooks/<base name>.md in this repository.
DEFAULT_RUNBOOK_BASE_URL = "docs/runbooks"
RUNBOOK_DIR = "docs/runbooks"
# Environment names: lower-case letters and digits, at most this long.
MAX_ENVIRONMENT_LENGTH = 20
# The offline evaluator's environment when a recording names none (QIS_TELEMETRY's default).
LOCAL = "local"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9:]*)\}")
_T = TypeVar("_T")


def prefixed(base: str) -> str:
    """`HighIngestionLatency` -> `qis-${Environment}-HighIngestionLatency`."""
    return PREFIX + base


def base_name(name: str) -> str:
    """The name without its environment prefix (placeholder or resolved), e.g. for files."""
    if name.startswith(PREFIX):
        return name[len(PREFIX) :]
    match = re.match(r"^qis-[a-z0-9]+-(.+)$", name)
    return match.group(1) if match else name


def runbook_path(name: str) -> str:
    """`docs/runbooks/<base name>.md`, relative to the repository root."""
    return f"{RUNBOOK_DIR}/{base_name(name)}.md"


def prefix_for(environment: str) -> str:
    """The name prefix of `environment`'s dashboards and alarms."""
    return PREFIX.replace(ENVIRONMENT, environment)


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace the `${Name}` placeholders that `values` has; leave the others."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _walk(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, tuple):
        return tuple(_walk(v, values) for v in value)
    if isinstance(value, msgspec.Struct):
        changes = {f: _walk(getattr(value, f), values) for f in value.__struct_fields__}
        return msgspec.structs.replace(value, **changes)
    return value


def resolve(definition: _T, values: Mapping[str, str]) -> _T:
    """`definition` (an alarm, a dashboard, a metric) with the given placeholders filled."""
    resolved: _T = _walk(definition, values)
    return resolved


def environment_values(environment: str) -> dict[str, str]:
    """The placeholder values of one environment when nothing else is known."""
    return {"Environment": environment, "RunbookBaseUrl": DEFAULT_RUNBOOK_BASE_URL}
