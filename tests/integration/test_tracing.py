"""One forced-sampled ingestion request yields one trace: HTTP -> Kafka -> worker -> PostgreSQL.

The api and the worker run in this process (so one in-memory exporter sees both) against
the real stack. The worker uses its own consumer group, positioned at the topic's end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from app.adapters.kafka import ensure_topics, new_consumer, new_producer, read_topic
from app.adapters.kafka_events import KafkaEventPublisher
from app.api.auth import INGEST
from app.entrypoints.api import create_app
from app.entrypoints.worker import build_consumer
from app.ports import PendingMessage
from app.settings import Settings, TelemetrySettings, WorkerSettings
from app.telemetry.setup import Telemetry, setup_telemetry
from app.telemetry.tracing import XRAY_ANNOTATIONS
from tests.auth import bearer
from tests.conftest import unique_series


@pytest.fixture(scope="module")
def telemetry() -> Telemetry:
    # Root rates at 0 %: only the forced-sampled request below can produce a trace.
    return setup_telemetry(
        TelemetrySettings(
            traces_exporter="memory",
            sample_rate_ingestion=0.0,
            sample_rate_query=0.0,
            sample_rate_default=0.0,
        ),
        "api",
    )


@pytest.fixture
async def running_worker(
    settings: Settings, pool: asyncpg.Pool, telemetry: Telemetry
) -> AsyncIterator[Settings]:
    # A topic and group of its own: no other worker (a `qis worker` of the e2e tests, a
    # developer's `make run`) can store these observations first.
    group = f"trace-test-{uuid.uuid4().hex[:8]}"
    kafka = msgspec.structs.replace(
        settings.kafka, observations_topic=f"test.trace.{group}", observations_partitions=2
    )
    await ensure_topics(kafka)
    worker_settings = msgspec.structs.replace(
        settings, kafka=kafka, worker=WorkerSettings(group_id=group)
    )
    producer = new_producer(kafka)
    consumer = new_consumer(kafka, group, "trace-test")
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()
    worker = build_consumer(worker_settings, pool, consumer, producer, metrics=telemetry.metrics)
    task = asyncio.create_task(worker.run(stop))
    yield worker_settings
    stop.set()
    await asyncio.wait_for(task, 30)
    await consumer.stop()
    await producer.stop()


def _annotation_keys(span: ReadableSpan) -> list[str]:
    return list(span.attributes.get(XRAY_ANNOTATIONS, ()))  # type: ignore[union-attr, arg-type]


def _w3c(trace_id: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{'1' * 16}-01"}


def _load_balancer(trace_id: str) -> dict[str, str]:
    """What an Application Load Balancer adds: a Root, no Parent."""
    root = f"1-{trace_id[:8]}-{trace_id[8:]}"
    return {"X-Amzn-Trace-Id": f"Self=1-{'2' * 8}-{'3' * 24};Root={root};Sampled=1"}


@pytest.mark.parametrize("incoming", [_w3c, _load_balancer], ids=["traceparent", "alb-root-only"])
async def test_one_sampled_request_is_one_trace_across_processes_and_stores(
    pool: asyncpg.Pool,
    telemetry: Telemetry,
    running_worker: Settings,
    incoming: Callable[[str], dict[str, str]],
) -> None:
    settings = running_worker
    trace_id = uuid.uuid4().hex
    series = unique_series()
    # A snap of now: the observations arrive inside its window, so timeliness is 1.
    snap = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    body = {
        "observations": [
            {
                "reference_data_id": series,
                "source": s,
                "snap": snap,
                "value": v,
                "observed_at": snap,
            }
            for s, v in (("a", 100.0), ("b", 100.02), ("c", 99.99))
        ]
    }
    headers = incoming(trace_id)
    async with AsyncTestClient(app=create_app(settings, telemetry)) as client:
        response = await client.post(
            "/v1/observations", json=body, headers={**headers, **bearer(INGEST)}
        )
    assert response.status_code == 202
    root = f"Root=1-{trace_id[:8]}-{trace_id[8:]};"
    assert response.headers["x-amzn-trace-id"].startswith(root)
    assert response.headers["x-amzn-trace-id"].endswith(";Sampled=1")

    async with asyncio.timeout(30):
        while not await pool.fetchval(
            "SELECT count(*) FROM official_values WHERE reference_data_id = $1", series
        ):
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # the batch span ends right after its commit

    assert telemetry.memory_spans is not None
    spans = [
        s
        for s in telemetry.memory_spans.get_finished_spans()
        if s.context is not None and f"{s.context.trace_id:032x}" == trace_id
    ]
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)

    (server,) = by_name["POST /v1/observations"]
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/observations"
    (produce,) = by_name[f"{settings.kafka.observations_topic} send"]
    assert produce.kind is SpanKind.PRODUCER
    assert any(s.kind is SpanKind.CONSUMER and "receive" in s.name for s in spans), sorted(
        (s.name, str(s.kind)) for s in spans
    )
    processes = by_name[f"{settings.kafka.observations_topic} process"]
    assert [p.kind for p in processes] == [SpanKind.CONSUMER] * len(processes), [
        (p.name, dict(p.attributes or {}), p.status) for p in processes
    ]
    # A rebalance right after the topic's creation may fence the first attempt (its
    # commit is refused, the batch is fetched again): exactly one attempt succeeds.
    succeeded = [p for p in processes if not p.events]
    assert len(succeeded) == 1, [[dict(e.attributes or {}) for e in p.events] for p in processes]
    for failed in (p for p in processes if p.events):
        assert failed.events[0].attributes is not None
        assert failed.events[0].attributes["exception.type"].endswith("PartitionFenced")
    database = [s for s in spans if (s.attributes or {}).get("db.system") == "postgresql"]
    assert any("INSERT" in s.name.upper() for s in database), [s.name for s in database]

    (validation,) = by_name["data-validation"]
    assert _annotation_keys(validation) == ["data-type", "validation-rules"]
    assert validation.attributes is not None
    assert validation.attributes["validation-results"] == "accepted 3"
    assert {"error-details", "validation-results"} <= set(validation.attributes)

    reconciliation = by_name["multi-source-reconciliation"]
    assert set(_annotation_keys(reconciliation[0])) == {"source-count", "conflict-resolution"}
    assert reconciliation[0].attributes is not None
    assert reconciliation[0].attributes["source-count"] == 3
    assert {"source-values", "reconciliation-algorithm"} <= set(reconciliation[0].attributes)
    quality = by_name["quality-assessment"]
    assert set(_annotation_keys(quality[0])) == {"quality-score", "assessment-type"}
    assert quality[0].attributes is not None
    # One per attempt: a fenced first attempt (see below) reconciled too, then rolled back.
    scores = [q.attributes["quality-score"] for q in quality if q.attributes]
    assert scores, "no quality-assessment span"
    assert set(scores) == {1.0}, [dict(q.attributes or {}) for q in quality]
    assert 1 <= len(quality) <= len(processes)
    assert {"quality-metrics", "anomaly-detection"} <= set(quality[0].attributes)

    # Parent links: worker spans hang under the producer's context, not a new root.
    ids = {s.context.span_id for s in spans if s.context is not None}
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
    assert [s.name for s in roots] == ["POST /v1/observations"]


async def test_every_response_carries_the_trace_header(
    settings: Settings, telemetry: Telemetry
) -> None:
    incoming = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    async with AsyncTestClient(app=create_app(settings, telemetry)) as client:
        followed = await client.get("/health/live", headers={"X-Amzn-Trace-Id": incoming})
        fresh = await client.get("/health/live")
        missing = await client.get("/no/such/route")
        bad = await client.post(
            "/v1/observations",
            content=b"{",
            headers={"content-type": "application/json", **bearer(INGEST)},
        )
    header = followed.headers["x-amzn-trace-id"]
    assert header.startswith("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=")
    assert header.endswith(";Sampled=0")
    for response in (fresh, missing, bad):
        value = response.headers["x-amzn-trace-id"]
        assert value.startswith("Root=1-")
        assert value.endswith(";Sampled=0")  # every root rate is 0 % in this module
    assert (missing.status_code, bad.status_code) == (404, 400)
    assert fresh.headers["x-amzn-trace-id"] != missing.headers["x-amzn-trace-id"]


@pytest.mark.parametrize("sampled", [True, False])
async def test_relayed_events_carry_each_propagation_header_once_in_the_producers_trace(
    settings: Settings, telemetry: Telemetry, sampled: bool
) -> None:
    """Read raw, as a plain Kafka client would: one `traceparent` and one
    `X-Amzn-Trace-Id`, both of the trace that wrote the event (not the relay's)."""
    kafka = msgspec.structs.replace(
        settings.kafka, official_values_topic=f"test.relay.{uuid.uuid4().hex[:8]}"
    )
    await ensure_topics(kafka)
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    stored = {"traceparent": f"00-{trace_id}-{parent}-{'01' if sampled else '00'}"}
    message = PendingMessage(
        id=1,
        event_id=str(uuid.uuid4()),
        topic=kafka.official_values_topic,
        key="ETH-USD",
        payload=b"{}",
        headers=stored,
    )
    producer = new_producer(kafka)
    await producer.start()
    try:
        await KafkaEventPublisher(producer, 10).publish([message])
    finally:
        await producer.stop()

    (record,) = [r async for r in read_topic(kafka, kafka.official_values_topic)]
    names = [name.lower() for name, _ in record.headers]
    assert names.count("traceparent") == 1, record.headers
    assert names.count("x-amzn-trace-id") == 1, record.headers
    assert names.count("qis-event-id") == 1
    values = {name.lower(): value.decode() for name, value in record.headers}
    assert values["traceparent"].split("-")[1] == trace_id
    assert values["traceparent"].endswith("-01" if sampled else "-00")
    assert f"Root=1-{trace_id[:8]}-{trace_id[8:]};" in values["x-amzn-trace-id"]
    assert values["x-amzn-trace-id"].endswith(f"Sampled={int(sampled)}")
