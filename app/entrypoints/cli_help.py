"""What `qis --help` says beyond argparse: the version and the settings each command reads.

`COMMAND_SETTINGS` is the one place that says which `QIS_*` settings a command reads: a
settings section (`"db"`: every `QIS_DB__*`) or one field (`"telemetry.log_level"`). The
variable names in each command's `--help` are rendered from the settings structs of
app/settings.py, so they cannot name a setting that does not exist; a test checks that
every command has an entry.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import msgspec

from app.settings import PREFIX, Settings

DISTRIBUTION = "qis-data-management"

# Every command logs at QIS_TELEMETRY__LOG_LEVEL (`qis` configures logging first).
_LOG = "telemetry.log_level"

# Command (its words after `qis`; a prefix covers the commands under it) -> what it reads.
COMMAND_SETTINGS: dict[str, tuple[str, ...]] = {
    "api": (
        "api",
        "db",
        "kafka",
        "redis",
        "cache",
        "telemetry",
        "auth",
        "rate_limit",
        "lake",
        "documents",
    ),
    "worker": ("worker", "db", "kafka", "telemetry"),
    "scheduler": (
        "scheduler",
        "db",
        "kafka",
        "telemetry",
        "lake",
        "retention",
        "eventbridge",
        "timestream",
    ),
    "db migrate": ("db", "retention.partitions_ahead_days", _LOG),
    "kafka topics": ("kafka", _LOG),
    "lake buckets": ("lake", _LOG),
    "lake archive": ("lake", "db", _LOG),
    "lake retention": ("retention", "lake", "db", _LOG),
    "events setup": ("eventbridge", _LOG),
    "events schemas": (_LOG,),
    "audit verify": ("db", _LOG),
    "dlq list": ("kafka", _LOG),
    "dlq replay": ("kafka", _LOG),
    "ingest": ("client", _LOG),
    "backup": ("db", "lake", "backup", _LOG),
    "restore-drill": ("db", "lake", "backup", _LOG),
    "lake query": ("lake", _LOG),
    "timestream setup": ("timestream", _LOG),
    "sizing": ("db", "kafka", "redis", _LOG),
    "dev issuer": (_LOG,),
    "dev token": ("auth.issuer", _LOG),
    "dashboards": (_LOG,),
    "alarms": (_LOG,),
}

SETTINGS_HEADING = "settings read (environment variables, docs/configuration.md):"


def version() -> str:
    """The installed package's version (its metadata), or a note when not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"


def _section_type(section: str) -> type[msgspec.Struct]:
    fields = {f.name: f.type for f in msgspec.structs.fields(Settings)}
    if section not in fields:
        raise KeyError(f"no settings section {section!r}")
    section_type: type[msgspec.Struct] = fields[section]
    return section_type


def variable(section: str, field: str) -> str:
    """`QIS_SECTION__FIELD` of a settings field (KeyError when there is no such field)."""
    if field not in _section_type(section).__struct_fields__:
        raise KeyError(f"no setting {section}.{field}")
    return f"{PREFIX}{section.upper()}__{field.upper()}"


def variables(entry: str) -> list[str]:
    """The variables of a `COMMAND_SETTINGS` entry: a section's, or one field's."""
    section, _, field = entry.partition(".")
    if field:
        return [variable(section, field)]
    return [variable(section, name) for name in _section_type(section).__struct_fields__]


def settings_of(command: str) -> tuple[str, ...]:
    """The entries of `command`, or of the longest command it is under ("" when none)."""
    words = command.split()
    for n in range(len(words), 0, -1):
        entries = COMMAND_SETTINGS.get(" ".join(words[:n]))
        if entries is not None:
            return entries
    raise KeyError(f"qis {command}: not in COMMAND_SETTINGS (app/entrypoints/cli_help.py)")


def settings_epilog(command: str, width: int = 88) -> str:
    """The `--help` epilog: the variables `command` reads, one line group per entry."""
    lines = [SETTINGS_HEADING]
    for entry in settings_of(command):
        lines += textwrap.wrap(
            ", ".join(variables(entry)),
            width=width,
            initial_indent="  ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
    return "\n".join(lines)


def _raw_settings_formatter(base: Any) -> type[argparse.HelpFormatter]:
    """`base`, printing the settings epilog as its lines are (argparse would refill it)."""

    class Formatter(base):  # type: ignore[misc]
        def _fill_text(self, text: str, width: int, indent: str) -> str:
            if text.startswith(SETTINGS_HEADING):
                return "\n".join(indent + line for line in text.splitlines())
            filled: str = super()._fill_text(text, width, indent)
            return filled

    return Formatter


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command of `parser` that runs something, as (its words, its parser)."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers and path:
        yield " ".join(path), parser
    for action in subparsers:
        for name, child in action.choices.items():
            yield from commands(child, (*path, name))


def annotate(parser: argparse.ArgumentParser) -> None:
    """Add the settings epilog to every command of `parser` that has an entry (a command
    without one still runs; tests/unit/test_cli_help.py fails on it)."""
    for command, child in commands(parser):
        try:
            child.epilog = settings_epilog(command)
        except KeyError:
            continue
        child.formatter_class = _raw_settings_formatter(child.formatter_class)
