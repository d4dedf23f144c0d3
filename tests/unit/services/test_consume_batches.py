"""How the worker reads a polled batch: lanes, and which records were sampled."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import app.telemetry.consume_tracing as tracing_module
from app.ports import LogRecord
from app.services.consume import split_lanes
from app.telemetry.consume_tracing import receive_sampled, record_sampled

TOPIC = "qis.observations.v1"


def records(partition: int, count: int) -> list[LogRecord]:
    return [
        LogRecord(topic=TOPIC, partition=partition, offset=offset, key=b"k", value=b"v")
        for offset in range(count)
    ]


def batch(**counts: int) -> dict[int, list[LogRecord]]:
    return {int(p[1:]): records(int(p[1:]), n) for p, n in counts.items()}


def test_partitions_are_dealt_whole_into_lanes_of_similar_size() -> None:
    polled = batch(p0=500, p1=300, p2=250, p3=200, p4=40)

    lanes = split_lanes(polled, 2)

    assert len(lanes) == 2
    sizes = sorted(sum(len(r) for r in lane.values()) for lane in lanes)
    assert sizes == [590, 700]  # largest first, each to the lightest lane
    every = [partition for lane in lanes for partition in lane]
    assert sorted(every) == [0, 1, 2, 3, 4]  # each partition in exactly one lane
    for lane in lanes:
        for partition, recs in lane.items():
            assert recs is polled[partition]  # never split, order kept


def test_one_lane_or_one_partition_keeps_the_batch_as_it_is() -> None:
    polled = batch(p0=10, p1=10)
    assert split_lanes(polled, 1) == [polled]
    single = batch(p3=10)
    assert split_lanes(single, 4) == [single]


def test_no_more_lanes_than_partitions() -> None:
    lanes = split_lanes(batch(p0=1, p1=1, p2=1), 8)
    assert [len(lane) for lane in lanes] == [1, 1, 1]


@pytest.mark.parametrize(
    ("headers", "sampled"),
    [
        ([("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")], True),
        ([("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")], False),
        ([("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03")], True),
        ([("X-Amzn-Trace-Id", b"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")], True),
        ([("x-amzn-trace-id", b"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0")], False),
        ([("qis-other", b"x"), ("traceparent", None)], False),
        ([("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz")], False),
        ([], False),
        (None, False),
    ],
)
def test_record_sampled_reads_the_decision_from_the_headers(
    headers: list[tuple[str, bytes | None]] | None, sampled: bool
) -> None:
    assert record_sampled(headers) is sampled


def traced_record(offset: int, traceparent: bytes | None, partition: int = 3) -> LogRecord:
    headers = () if traceparent is None else (("traceparent", traceparent),)
    return LogRecord(
        topic=TOPIC, partition=partition, offset=offset, key=b"k", value=b"v", headers=headers
    )


def test_one_receive_span_per_sampled_request_and_the_batch_joins_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing_module, "_tracer", provider.get_tracer("test"))
    first = "0af7651916cd43dd8448eb211c80319c"
    second = "1bf7651916cd43dd8448eb211c80319d"
    polled = [
        traced_record(10, f"00-{'f' * 32}-b7ad6b7169203331-00".encode()),
        traced_record(11, f"00-{first}-b7ad6b7169203331-01".encode()),
        traced_record(12, None),
        traced_record(13, f"00-{second}-c7ad6b7169203332-01".encode()),
        # another record of the first request (another series, another partition)
        traced_record(7, f"00-{first}-b7ad6b7169203331-01".encode(), partition=4),
    ]

    parent, links = receive_sampled(polled)

    spans = exporter.get_finished_spans()
    assert [
        (f"{s.context.trace_id:032x}", (s.attributes or {}).get("messaging.kafka.message.offset"))
        for s in spans
        if s.context is not None
    ] == [(first, 11), (second, 13)]
    assert {s.kind for s in spans} == {SpanKind.CONSUMER}
    assert {s.name for s in spans} == {f"{TOPIC} receive"}
    assert parent is not None
    assert f"{trace.get_current_span(parent).get_span_context().trace_id:032x}" == first
    assert [f"{link.context.trace_id:032x}" for link in links] == [second]


def test_an_unsampled_batch_has_no_parent_and_no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing_module, "_tracer", provider.get_tracer("test"))

    polled = [traced_record(1, None), traced_record(2, None)]

    assert receive_sampled(polled) == (None, [])
    assert exporter.get_finished_spans() == ()


def test_each_observation_carries_the_actor_of_its_record() -> None:
    from msgspec.structs import replace

    from app.domain.observation import ACTOR_HEADER
    from app.services.consume import decode_units, merge
    from tests.unit.services.consume_fakes import record

    feed = replace(record(0, 0, "ETH-USD", "a", "b"), headers=((ACTOR_HEADER, b"feed-eth"),))
    odd = replace(record(0, 1, "ETH-USD", "c"), headers=((ACTOR_HEADER, b"x\x00" + b"y" * 400),))
    plain = record(1, 0, "BTC-USD", "a")
    merged = merge(decode_units({0: [feed, odd], 1: [plain]}))
    by_source = {
        (o.reference_data_id, o.source): merged.actors.get(o.observation_id)
        for o in merged.observations
    }
    assert by_source[("ETH-USD", "a")] == by_source[("ETH-USD", "b")] == "feed-eth"
    odd_actor = by_source[("ETH-USD", "c")]
    assert odd_actor is not None
    assert "\x00" not in odd_actor
    assert len(odd_actor) <= 256
    assert by_source[("BTC-USD", "a")] is None
