"""`qis --version` and each command's `--help`: its options and the QIS_* settings it reads."""

from __future__ import annotations

from importlib import metadata

import msgspec
import pytest

from app.entrypoints.cli import TOOLS, build_parser, main
from app.entrypoints.cli_help import COMMAND_SETTINGS, commands, settings_epilog, variables
from app.settings import Settings


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def every_command() -> list[str]:
    """Every command `qis` runs, the tools' included (each loaded as when it is run)."""
    # Without a tool's name first, the tools are one-line entries: left out here.
    names = {name for name, _ in commands(build_parser()) if name not in TOOLS}
    for tool in TOOLS:
        names |= {name for name, _ in commands(build_parser([tool])) if name.split()[0] == tool}
    return sorted(names)


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"qis {metadata.version('qis-data-management')}\n"


def test_every_command_has_an_entry_and_its_help_lists_its_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = every_command()
    assert {"api", "worker", "scheduler", "db migrate", "dlq replay", "sizing"} <= set(found)
    assert any(name.startswith("alarms ") for name in found)
    for command in found:
        text = help_of(capsys, *command.split())
        assert text.startswith(f"usage: qis {command}")
        assert "settings read (environment variables" in text, command
        assert "QIS_TELEMETRY__LOG_LEVEL" in text, command  # `qis` logs at that level


def test_every_listed_variable_is_a_setting() -> None:
    sections = {f.name: f.type for f in msgspec.structs.fields(Settings)}
    listed = {v for entries in COMMAND_SETTINGS.values() for e in entries for v in variables(e)}
    assert len(listed) > 60
    for name in listed:
        section, _, field = name.removeprefix("QIS_").lower().partition("__")
        assert field in sections[section].__struct_fields__, name
    # all of a section, in the struct's order
    assert variables("redis")[:2] == ["QIS_REDIS__URL", "QIS_REDIS__SOCKET_TIMEOUT_SECONDS"]
    with pytest.raises(KeyError):
        variables("db.no_such_field")
    with pytest.raises(KeyError):
        variables("nope")


def test_a_command_lists_what_it_reads_and_nothing_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = help_of(capsys, "api")
    for name in ("QIS_API__PORT", "QIS_DB__READER_DSN", "QIS_KAFKA__BOOTSTRAP_SERVERS"):
        assert name in api
    for name in ("QIS_REDIS__URL", "QIS_CACHE__SETTLE_SECONDS", "QIS_TELEMETRY__ENABLED"):
        assert name in api
    assert "QIS_WORKER__" not in api
    assert "QIS_SCHEDULER__" not in api

    worker = help_of(capsys, "worker")
    assert "QIS_WORKER__LANES" in worker
    assert "QIS_DB__POOL_MAX_SIZE" in worker
    assert "QIS_REDIS__" not in worker
    assert "QIS_API__" not in worker

    migrate = help_of(capsys, "db", "migrate")
    assert "QIS_DB__WRITER_DSN" in migrate
    assert "QIS_KAFKA__" not in migrate
    assert [n for n in migrate.split() if n.startswith("QIS_TELEMETRY")] == [
        "QIS_TELEMETRY__LOG_LEVEL"
    ]

    listing = help_of(capsys, "dlq", "list")
    assert "--stage" in listing
    assert "--with-payload" in listing
    assert "QIS_KAFKA__DLQ_TOPIC" in listing
    assert "QIS_DB__" not in listing


def test_the_epilog_keeps_its_lines_and_a_command_under_a_prefix_inherits_it() -> None:
    text = settings_epilog("db migrate", width=60)
    lines = text.splitlines()
    assert lines[0].startswith("settings read")
    assert all(len(line) <= 60 for line in lines[1:])
    assert lines[-1] == "  QIS_TELEMETRY__LOG_LEVEL"
    assert settings_epilog("alarms evaluate") == settings_epilog("alarms")
    with pytest.raises(KeyError, match="COMMAND_SETTINGS"):
        settings_epilog("no-such-command")
