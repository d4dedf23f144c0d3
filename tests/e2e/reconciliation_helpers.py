"""Posting snaps, waiting for official values, and reading event topics in e2e tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from app.adapters.kafka import topic_partitions
from app.settings import Settings


def stamp(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def current_snap() -> datetime:
    """A snap at the current second, so sources posted now arrive on time."""
    return datetime.now(UTC).replace(microsecond=0)


def item(
    series: str, source: str, value: float, snap: datetime, observed_after: float = 0.1
) -> dict[str, Any]:
    return {
        "reference_data_id": series,
        "source": source,
        "snap": stamp(snap),
        "value": value,
        "observed_at": stamp(snap + timedelta(seconds=observed_after)),
    }


async def configure(http: httpx.AsyncClient, series: str, **config: Any) -> dict[str, Any]:
    response = await http.put(f"/v1/reference-data/{series}", json=config)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def post(http: httpx.AsyncClient, *items: dict[str, Any]) -> None:
    response = await http.post("/v1/observations", json={"observations": list(items)})
    assert response.status_code == 202, response.text


async def official_value(
    http: httpx.AsyncClient,
    series: str,
    snap: datetime,
    *,
    at_least: int = 1,
    timeout: float = 30,
    **query: Any,
) -> dict[str, Any]:
    """Poll until the snap has a version >= `at_least` (with `query`, e.g. version=1)."""
    url = f"/v1/reference-data/{series}/official-values/{stamp(snap)}"
    deadline = asyncio.get_running_loop().time() + timeout
    last = "no answer"
    while asyncio.get_running_loop().time() < deadline:
        response = await http.get(url, params=query)
        if response.status_code == 200 and response.json()["version"] >= at_least:
            body: dict[str, Any] = response.json()
            return body
        last = f"{response.status_code} {response.text}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"no version >= {at_least} of {series} at {snap} in {timeout}s: {last}")


class TopicTail:
    """Reads a topic from its current end: every record produced after `start()`."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.partitions = topic_partitions(settings.kafka)[topic]
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )

    async def __aenter__(self) -> TopicTail:
        await self._consumer.start()
        try:
            assigned = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            self._consumer.assign(assigned)
            await self._consumer.seek_to_end(*assigned)
            for tp in assigned:  # resolve the positions now, before anything is produced
                await self._consumer.position(tp)
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 30
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Poll until `count` records whose decoded payload satisfies `predicate` arrived."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            matching = [r for r in self.records if r.value and predicate(decode(r))]
            if len(matching) >= count:
                return matching
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"{len(matching)}/{count} matching records on {self.topic} in {timeout}s"
                )
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                self.records.extend(records)


def decode(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    assert record.value is not None
    decoded: dict[str, Any] = msgspec.json.decode(record.value)
    return decoded


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    value: bytes = dict(record.headers)[name]
    return value.decode()
