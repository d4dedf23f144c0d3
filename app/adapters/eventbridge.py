"""Amazon EventBridge: the published events, put on an event bus (docs/events.md).

`EventBridgeSink` is an `EventSink`: its sink relay hands it the official-value and
quality-alert events in outbox order, and it puts each on the bus as one PutEvents entry:
Source `EventBridgeSettings.source`, DetailType the event's fixed name (`DETAIL_TYPES`),
Detail the event's JSON exactly as published on Kafka (with its `event_id`), Time the
event's `recorded_at` (`failed_at`), TraceHeader the X-Ray trace header stored with it.

Order: a PutEvents call carries at most 10 entries and at most one entry per series, and
the calls go one after the other. An entry the call reports as failed is retried alone
(the others of its call are in) until it is in or the attempts are spent, before any
later call: a series' events reach the bus in outbox order. Entries refused for what
they are (larger than PutEvents takes, or `MalformedDetail`/`InvalidArgument`) are
logged with their event id and left out; anything else that fails is `SinkUnavailable`
and the relay hands the batch over again. Redelivered entries carry the same event id in
their detail, so consumers deduplicate on it.

boto3 (the service's AWS SDK) with the endpoint, region and static credentials of
`EventBridgeSettings`: locally the stack's moto server, in AWS the SDK's default endpoint
and the pod's IAM role. The calls block, so they run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
import msgspec
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.adapters.aws_clients import endpoint_options
from app.domain.events import OfficialValuePublished, QualityAlertRaised, ReconciliationFailed
from app.ports import SinkEvent, SinkUnavailable

if TYPE_CHECKING:
    from app.settings import EventBridgeSettings

__all__ = [
    "DETAIL_TYPES",
    "MAX_ENTRIES_PER_CALL",
    "SCHEMA_DIALECT",
    "EventBridgeSink",
    "aws_client",
    "detail_schemas",
    "entry_size",
    "eventbridge_sink",
    "plan_calls",
]

_log = logging.getLogger("qis.sink.eventbridge")

# The DetailType of each event: fixed names that rules match on (docs/events.md).
DETAIL_TYPES: dict[type, str] = {
    OfficialValuePublished: "Official Value Published",
    QualityAlertRaised: "Quality Alert Raised",
    ReconciliationFailed: "Reconciliation Failed",
}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# PutEvents takes at most 10 entries per call.
MAX_ENTRIES_PER_CALL = 10
# Entry error codes that say the entry itself is wrong: another attempt cannot help.
# Every other code (InternalFailure, ThrottlingException, and the permission errors of
# a misconfigured bus or role) is retried, then reported as `SinkUnavailable`: a
# configuration fault must stop the sink, not drop its events.
REFUSED_CODES = frozenset({"MalformedDetail", "InvalidArgument"})
TRACE_HEADER = "X-Amzn-Trace-Id"
# PutEvents counts 14 bytes for an entry's Time (entry_size).
_TIME_BYTES = 14

Sleep = Callable[[float], Awaitable[None]]


def aws_client(service: str, settings: EventBridgeSettings) -> Any:
    """A boto3 client of `service` ("events", "sqs") for the settings' endpoint, region and
    credentials; whole calls are retried by the SDK's standard mode (connection errors,
    throttling, 5xx), `call_attempts` in all."""
    kwargs: dict[str, Any] = {}
    if settings.region:  # empty: the SDK's (AWS_REGION, set in EKS pods)
        kwargs["region_name"] = settings.region
    kwargs.update(endpoint_options(settings))
    config = Config(
        connect_timeout=5,
        read_timeout=10,
        retries={"max_attempts": settings.call_attempts, "mode": "standard"},
    )
    return boto3.client(service, config=config, **kwargs)


def detail_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema of each detail type's Detail, by file name
    (`official-value-published.schema.json`, ...), generated from the event structs with
    msgspec; docs/events/ holds them (`qis events schemas --write docs/events`)."""
    out: dict[str, dict[str, Any]] = {}
    for event_type, detail_type in DETAIL_TYPES.items():
        schema: dict[str, Any] = {
            "$schema": SCHEMA_DIALECT,
            "title": detail_type,
            "description": f"The detail of a '{detail_type}' event: the event's JSON as"
            " published on Kafka; consumers deduplicate on event_id.",
            **msgspec.json.schema(event_type),
        }
        out[f"{detail_type.lower().replace(' ', '-')}.schema.json"] = schema
    return out


class Entry(NamedTuple):
    """One PutEvents entry with what the sink needs to place and report it."""

    event_id: str
    key: str
    size: int
    request: dict[str, Any]


def entry_size(request: dict[str, Any]) -> int:
    """An entry's size as PutEvents counts it: UTF-8 bytes of Source, DetailType, Detail
    and Resources, plus 14 for a Time."""
    size = _TIME_BYTES if request.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(request.get(name, "")).encode())
    size += sum(len(r.encode()) for r in request.get("Resources", ()))
    return size


def plan_calls(entries: Sequence[Entry], max_bytes: int) -> list[list[Entry]]:
    """Group entries into PutEvents calls, to be made in the returned order: at most 10
    entries and `max_bytes` per call, at most one entry per series per call, and each
    series' entries in their given order across the calls.

    Each call takes, in order, every entry that fits whose series has no entry in the
    call yet nor an earlier entry left for a later call. Every entry must fit alone.
    """
    calls: list[list[Entry]] = []
    remaining = list(entries)
    while remaining:
        call: list[Entry] = []
        size = 0
        taken: set[str] = set()  # series with an entry in this call or left before it
        rest: list[Entry] = []
        for entry in remaining:
            if (
                entry.key not in taken
                and len(call) < MAX_ENTRIES_PER_CALL
                and size + entry.size <= max_bytes
            ):
                call.append(entry)
                size += entry.size
            else:
                rest.append(entry)
            taken.add(entry.key)
        if not call:  # only an entry larger than max_bytes can be left behind alone
            raise ValueError(f"entry {remaining[0].event_id} is larger than {max_bytes} bytes")
        calls.append(call)
        remaining = rest
    return calls


def plan_waves(calls: Sequence[list[Entry]], width: int) -> list[list[list[Entry]]]:
    """Group consecutive calls into waves of at most `width` calls that share no series:
    the calls of a wave may be made at once, and every call of a wave (retries included)
    ends before the next wave starts, so each series' entries still go in order."""
    waves: list[list[list[Entry]]] = []
    series: set[str] = set()
    for call in calls:
        keys = {entry.key for entry in call}
        if not waves or len(waves[-1]) >= width or keys & series:
            waves.append([])
            series = set()
        waves[-1].append(call)
        series |= keys
    return waves


class EventBridgeSink:
    """The `eventbridge` sink: events on an EventBridge bus (see the module docstring)."""

    name = "eventbridge"

    def __init__(
        self,
        client: Any,
        *,
        bus_name: str,
        source: str = "qis.reference-data",
        batch_size: int = 100,
        entry_attempts: int = 4,
        retry_initial_seconds: float = 0.2,
        retry_max_seconds: float = 5.0,
        max_request_bytes: int = 262_144,
        concurrent_calls: int = 5,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.bus_name = bus_name
        self.source = source
        self.batch_size = batch_size
        self.entry_attempts = entry_attempts
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.max_request_bytes = max_request_bytes
        self.concurrent_calls = concurrent_calls
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: EventBridgeSettings, client: Any = None) -> EventBridgeSink:
        return cls(
            client if client is not None else aws_client("events", settings),
            bus_name=settings.bus_name,
            source=settings.source,
            batch_size=settings.batch_size,
            entry_attempts=settings.entry_attempts,
            retry_initial_seconds=settings.retry_initial_seconds,
            retry_max_seconds=settings.retry_max_seconds,
            max_request_bytes=settings.max_request_bytes,
            concurrent_calls=settings.concurrent_calls,
        )

    def entry(self, event: SinkEvent) -> Entry:
        """The PutEvents entry of one event (its size counted as PutEvents does);
        UnicodeDecodeError when its payload is not UTF-8 (never the case for JSON the
        service wrote)."""
        request: dict[str, Any] = {
            "Source": self.source,
            "DetailType": DETAIL_TYPES[type(event.event)],
            "Detail": event.payload.decode(),
            "EventBusName": self.bus_name,
            "Time": _event_time(event),
        }
        trace_header = event.headers.get(TRACE_HEADER)
        if trace_header:
            request["TraceHeader"] = trace_header
        return Entry(event.event_id, event.key, entry_size(request), request)

    async def deliver(self, events: Sequence[SinkEvent]) -> int:
        """Put every event on the bus in order (see the module docstring); return how many
        were refused for what they are. `SinkUnavailable` when the bus did not take all."""
        refused = 0
        entries: list[Entry] = []
        for event in events:
            try:
                entry = self.entry(event)
            except UnicodeDecodeError as exc:
                refused += 1
                _refused(Entry(event.event_id, event.key, 0, {}), "MalformedDetail", str(exc))
                continue
            if entry.size > self.max_request_bytes:
                refused += 1
                _refused(entry, "EntryTooLarge", f"{entry.size} bytes")
            else:
                entries.append(entry)
        for wave in plan_waves(plan_calls(entries, self.max_request_bytes), self.concurrent_calls):
            outcomes = await asyncio.gather(
                *(self._put(call) for call in wave), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
                refused += outcome
        return refused

    async def _put(self, call: list[Entry]) -> int:
        """Make one call, then retry its failed entries alone; return how many it refused."""
        refused = 0
        failures: list[tuple[Entry, str]] = []
        for attempt in range(self.entry_attempts):
            if attempt:
                await self._sleep(self._backoff(attempt))
            results = await self._put_events(call)
            failures = []
            for entry, result in zip(call, results, strict=True):
                code = result.get("ErrorCode")
                if not code:
                    continue
                if code in REFUSED_CODES:
                    refused += 1
                    _refused(entry, code, str(result.get("ErrorMessage", "")))
                else:
                    failures.append((entry, f"{code}: {result.get('ErrorMessage', '')}"))
            if not failures:
                return refused
            call = [entry for entry, _ in failures]
            _log.warning(
                "eventbridge entries failed, retrying them",
                extra={"sink": self.name, "failed": len(failures), "attempt": attempt + 1},
            )
        entry, error = failures[0]
        raise SinkUnavailable(
            f"eventbridge: {len(failures)} entries still failing after {self.entry_attempts}"
            f" attempts (first: event {entry.event_id}, {error})"
        )

    async def _put_events(self, call: list[Entry]) -> list[dict[str, Any]]:
        try:
            response = await asyncio.to_thread(
                self.client.put_events, Entries=[entry.request for entry in call]
            )
        except (BotoCoreError, ClientError) as exc:
            raise SinkUnavailable(f"eventbridge: PutEvents failed: {exc}") from exc
        results: list[dict[str, Any]] = response.get("Entries", [])
        if len(results) != len(call):
            raise SinkUnavailable(
                f"eventbridge: PutEvents answered {len(results)} results for {len(call)} entries"
            )
        return results

    def _backoff(self, attempt: int) -> float:
        """Seconds before retry `attempt` (1, 2, ...): doubling, capped, half of it jittered."""
        ceiling = min(self.retry_max_seconds, self.retry_initial_seconds * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _event_time(event: SinkEvent) -> datetime:
    payload = event.event
    if isinstance(payload, ReconciliationFailed):
        return payload.failed_at
    return payload.recorded_at


def _refused(entry: Entry, code: str, message: str) -> None:
    _log.error(
        "eventbridge refused an event; left out",
        extra={"sink": "eventbridge", "event_id": entry.event_id, "error": f"{code}: {message}"},
    )


def eventbridge_sink(settings: EventBridgeSettings) -> EventBridgeSink | None:
    """The sink of the settings, or None when EventBridge is switched off."""
    return EventBridgeSink.from_settings(settings) if settings.enabled else None
