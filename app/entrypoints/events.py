"""`qis events ...`: the EventBridge bus's local resources (docs/events.md)."""

from __future__ import annotations

import argparse
import sys

from app.settings import Settings


def cmd_setup(settings: Settings, _: argparse.Namespace) -> int:
    """Create the bus, its two rules and an SQS queue per rule on the local endpoint
    (idempotent, like `lake buckets`); one line per resource on stdout."""
    from app.adapters.eventbridge_routing import ROUTING_ERRORS, ensure_local_routing
    from app.entrypoints.unreachable import EXIT_UNREACHABLE

    bridge = settings.eventbridge
    try:
        created, routed = ensure_local_routing(bridge)
    except ValueError as exc:
        sys.stderr.write(f"qis: {exc}\n")
        return 2
    except ROUTING_ERRORS as exc:
        sys.stderr.write(f"qis: cannot reach EventBridge at {bridge.endpoint_url} ({exc})\n")
        return EXIT_UNREACHABLE
    sys.stdout.write(f"bus\t{bridge.bus_name}\t{'created' if created else 'exists'}\n")
    for rule, queue_url in routed.items():
        sys.stdout.write(f"rule\t{rule}\t-> {queue_url}\n")
    return 0


def cmd_schemas(_: Settings, args: argparse.Namespace) -> int:
    """Print the detail schemas (JSON), or write one file each into --write DIR."""
    import json
    from pathlib import Path

    from app.adapters.eventbridge import detail_schemas

    schemas = detail_schemas()
    if args.write is None:
        sys.stdout.write(json.dumps(schemas, indent=2) + "\n")
        return 0
    directory = Path(args.write)
    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (directory / name).write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        sys.stdout.write(f"{directory / name}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `events setup` and `events schemas` to `qis`."""
    events = sub.add_parser(
        "events", help="the EventBridge bus: local resources", description=__doc__
    ).add_subparsers(dest="events", required=True)
    events.add_parser(
        "setup",
        help="create the local event bus, its rules and their SQS queues",
        description="Create (or bring up to date) on QIS_EVENTBRIDGE__ENDPOINT_URL, the local"
        " stack's moto server, the bus QIS_EVENTBRIDGE__BUS_NAME, its two rules"
        " (<bus>-official-values, <bus>-quality-alerts) and an SQS queue of the same name as"
        " each rule's target. Idempotent; whether or not QIS_EVENTBRIDGE__ENABLED is set, so"
        " enabling the sink needs nothing else. Refuses to run without an endpoint URL: in"
        " AWS the events stack creates them. Exit 2 when the endpoint does not answer.",
    ).set_defaults(run=cmd_setup)
    schemas = events.add_parser(
        "schemas",
        help="the JSON schema of each event's detail",
        description="Generate the JSON schema (draft 2020-12) of each detail type's Detail"
        " from the event structs: printed as one JSON object by file name, or written one"
        " file each into --write DIR (docs/events in the repository, checked by a test).",
    )
    schemas.add_argument("--write", metavar="DIR", help="write <detail-type>.schema.json files")
    schemas.set_defaults(run=cmd_schemas)
