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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `events setup` to `qis`."""
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
