"""The committed detail schemas (docs/events/) are the generated ones, and the details the
sink emits validate against them (jsonschema, already a dev dependency)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from app.adapters.eventbridge import DETAIL_TYPES, EventBridgeSink, detail_schemas
from app.entrypoints.cli import main
from tests.sink_events import Outbox, official

SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "events"


def committed() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in SCHEMAS.glob("*.json")}


def validator(detail_type: str) -> Draft202012Validator:
    name = f"{detail_type.lower().replace(' ', '-')}.schema.json"
    schema = committed()[name]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_committed_schemas_are_the_generated_ones() -> None:
    # After changing an event struct: `.venv/bin/qis events schemas --write docs/events`.
    assert committed() == detail_schemas()
    assert sorted(committed()) == [
        "official-value-published.schema.json",
        "quality-alert-raised.schema.json",
        "reconciliation-failed.schema.json",
    ]
    assert {s["title"] for s in committed().values()} == set(DETAIL_TYPES.values())


def test_the_schemas_command_writes_the_committed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["events", "schemas", "--write", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    for path in tmp_path.iterdir():
        assert path.read_bytes() == (SCHEMAS / path.name).read_bytes()


def emitted() -> list[tuple[str, dict[str, Any]]]:
    """(DetailType, Detail) of entries the sink makes from real domain events."""
    outbox = Outbox()
    events = outbox.versions([official("A", 1, 0.99), official("B", 2, 0.5)])
    events.append(outbox.failure("C"))
    sink = EventBridgeSink(None, bus_name="b")
    return [
        (entry.request["DetailType"], json.loads(entry.request["Detail"]))
        for entry in map(sink.entry, events)
    ]


def test_emitted_details_validate_against_their_schema() -> None:
    details = emitted()
    assert sorted({t for t, _ in details}) == sorted(DETAIL_TYPES.values())
    for detail_type, detail in details:
        errors = list(validator(detail_type).iter_errors(detail))
        assert errors == [], (detail_type, errors)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("event_id"),
        lambda d: d.update(type="something_else"),
        lambda d: d.update(version="2"),
        lambda d: d["quality"].pop("score"),
        lambda d: d.update(status="great"),
    ],
)
def test_a_damaged_detail_does_not_validate(damage: Any) -> None:
    detail_type, detail = next(d for d in emitted() if d[0] == "Official Value Published")
    damage(detail)
    assert list(validator(detail_type).iter_errors(detail)) != []
