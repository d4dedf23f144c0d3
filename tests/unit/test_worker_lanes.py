"""How the worker deals a polled batch into concurrent lanes."""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition

from app.worker import split_lanes

TOPIC = "qis.observations.v1"


def records(partition: int, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(TOPIC, partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])
        for offset in range(count)
    ]


def batch(**counts: int) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    return {TopicPartition(TOPIC, int(p[1:])): records(int(p[1:]), n) for p, n in counts.items()}


def test_partitions_are_dealt_whole_into_lanes_of_similar_size() -> None:
    polled = batch(p0=500, p1=300, p2=250, p3=200, p4=40)

    lanes = split_lanes(polled, 2)

    assert len(lanes) == 2
    sizes = sorted(sum(len(r) for r in lane.values()) for lane in lanes)
    assert sizes == [590, 700]  # largest first, each to the lightest lane
    every = [tp.partition for lane in lanes for tp in lane]
    assert sorted(every) == [0, 1, 2, 3, 4]  # each partition in exactly one lane
    for lane in lanes:
        for tp, recs in lane.items():
            assert recs is polled[tp]  # never split, order kept


def test_one_lane_or_one_partition_keeps_the_batch_as_it_is() -> None:
    polled = batch(p0=10, p1=10)
    assert split_lanes(polled, 1) == [polled]
    single = batch(p3=10)
    assert split_lanes(single, 4) == [single]


def test_no_more_lanes_than_partitions() -> None:
    lanes = split_lanes(batch(p0=1, p1=1, p2=1), 8)
    assert [len(lane) for lane in lanes] == [1, 1, 1]
