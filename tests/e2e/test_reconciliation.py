"""Reconciliation, versions, publication and audit through the running api, worker, scheduler."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
import httpx

from app.adapters.kafka_events import EVENT_ID_HEADER
from app.settings import Settings
from tests.conftest import unique_series
from tests.e2e.conftest import QIS, Service, service_env
from tests.e2e.reconciliation_helpers import (
    TopicTail,
    configure,
    current_snap,
    decode,
    header,
    item,
    official_value,
    post,
    stamp,
)

ABC = ["a", "b", "c"]


async def test_series_configuration_is_stored_listed_and_audited(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    series = unique_series()
    assert (await http.get(f"/v1/reference-data/{series}")).status_code == 404

    stored = await configure(http, series, expected_sources=ABC, window_seconds=2)
    changed = await configure(http, series, expected_sources=ABC, window_seconds=3)

    assert stored["config"]["expected_sources"] == ABC
    assert changed["config"]["window_seconds"] == 3
    assert changed["updated_at"].endswith("Z")
    fetched = (await http.get(f"/v1/reference-data/{series}")).json()
    assert fetched == changed
    page = (await http.get("/v1/reference-data", params={"limit": 1000})).json()
    assert "next_cursor" in page
    actions = await pool.fetch(
        """SELECT action, before::text IS NOT NULL AS has_before FROM audit_log
            WHERE entity_type = 'reference_data' AND entity_id = $1 ORDER BY seq""",
        series,
    )
    assert [(r["action"], r["has_before"]) for r in actions] == [
        ("series.created", False),
        ("series.configured", True),
    ]


async def test_invalid_configuration_is_a_422_listing_each_field(http: httpx.AsyncClient) -> None:
    series = unique_series()
    response = await http.put(
        f"/v1/reference-data/{series}",
        json={"expected_sources": ["a"], "min_sources": 2, "colour": "red"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"] == [{"loc": ["colour"], "msg": "unknown field"}]

    response = await http.put(
        f"/v1/reference-data/{series}", json={"expected_sources": ["a"], "min_sources": 2}
    )
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["min_sources"]]
    assert (await http.get(f"/v1/reference-data/{series}")).status_code == 404


async def test_three_agreeing_sources_publish_version_1_with_the_median(
    http: httpx.AsyncClient, worker: Service
) -> None:
    series, snap = unique_series(), current_snap()
    await configure(http, series, expected_sources=ABC)

    await post(
        http,
        item(series, "a", 100.00, snap),
        item(series, "b", 100.02, snap),
        item(series, "c", 99.99, snap),
    )

    v1 = await official_value(http, series, snap)
    assert (v1["version"], v1["value"], v1["status"], v1["method"]) == (
        1,
        100.0,
        "official",
        "median",
    )
    assert v1["quality"] == {
        "score": 1.0,
        "completeness": 1.0,
        "timeliness": 1.0,
        "consistency": 1.0,
        "validity": 1.0,
    }
    assert v1["sources_used"] == ABC
    assert v1["sources_excluded"] == []
    assert v1["supersedes"] is None
    assert v1["snap"] == stamp(snap)
    assert v1["recorded_at"].endswith("Z")


async def test_a_correction_after_publication_is_version_2_and_as_of_reads_version_1(
    http: httpx.AsyncClient, worker: Service
) -> None:
    series, snap = unique_series(), current_snap()
    await configure(http, series, expected_sources=ABC)
    await post(
        http,
        item(series, "a", 100.00, snap),
        item(series, "b", 100.02, snap),
        item(series, "c", 99.99, snap),
    )
    v1 = await official_value(http, series, snap)

    await post(http, item(series, "c", 100.04, snap, observed_after=0.5))

    v2 = await official_value(http, series, snap, at_least=2)
    assert (v2["version"], v2["supersedes"], v2["value"]) == (2, 1, 100.02)
    assert await official_value(http, series, snap, version=1) == v1
    first, second = (datetime.fromisoformat(v["recorded_at"]) for v in (v1, v2))
    assert first < second
    between = stamp(first + (second - first) / 2)
    assert await official_value(http, series, snap, as_of=between) == v1
    assert await official_value(http, series, snap, as_of=v2["recorded_at"]) == v2
    before = stamp(first - timedelta(milliseconds=1))
    response = await http.get(
        f"/v1/reference-data/{series}/official-values/{stamp(snap)}", params={"as_of": before}
    )
    assert response.status_code == 404


async def test_an_outlier_is_excluded_with_reason_outlier(
    http: httpx.AsyncClient, worker: Service
) -> None:
    series, snap = unique_series(), current_snap()
    await configure(http, series, expected_sources=ABC)

    await post(
        http,
        item(series, "a", 100.0, snap),
        item(series, "b", 100.01, snap),
        item(series, "c", 103.0, snap),
    )

    v1 = await official_value(http, series, snap)
    assert v1["sources_excluded"] == [{"source": "c", "reason": "outlier"}]
    assert v1["sources_used"] == ["a", "b"]
    assert v1["value"] == 100.005
    assert v1["quality"]["consistency"] == 0.6667
    assert v1["status"] == "suspect"


async def test_a_window_closing_with_a_source_missing_is_suspect_and_alerts(
    http: httpx.AsyncClient, worker: Service, scheduler: Service, settings: Settings
) -> None:
    series, snap = unique_series(), current_snap()
    await configure(http, series, expected_sources=ABC, window_seconds=2)
    url = f"/v1/reference-data/{series}/official-values/{stamp(snap)}"

    async with TopicTail(settings, settings.kafka.quality_alerts_topic) as alerts:
        await post(http, item(series, "a", 100.00, snap), item(series, "b", 100.02, snap))
        assert (await http.get(url)).status_code == 404  # window still open

        # Generous: a relay backlog left by other users of the stack is drained first.
        v1 = await official_value(http, series, snap, timeout=60)
        (alert,) = await alerts.wait_for(lambda e: e.get("reference_data_id") == series, timeout=90)

    assert (v1["status"], v1["value"], v1["version"]) == ("suspect", 100.01, 1)
    assert v1["quality"]["completeness"] == 0.6667
    assert v1["quality"]["score"] == 0.6667
    event = decode(alert)
    assert event["type"] == "quality_alert_raised"
    assert (event["version"], event["status"], event["threshold"]) == (1, "suspect", 0.95)
    assert event["quality"] == v1["quality"]
    assert alert.key == series.encode()
    assert header(alert, EVENT_ID_HEADER) == event["event_id"]


async def test_published_events_carry_the_version_and_keep_their_id_on_redelivery(
    http: httpx.AsyncClient,
    worker: Service,
    scheduler: Service,
    settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    series, snap = unique_series(), current_snap()
    await configure(http, series, expected_sources=ABC)

    def ours(event: dict[str, object]) -> bool:
        return event.get("reference_data_id") == series

    async with TopicTail(settings, settings.kafka.official_values_topic) as values:
        await post(
            http,
            item(series, "a", 100.00, snap),
            item(series, "b", 100.02, snap),
            item(series, "c", 99.99, snap),
        )
        (first,) = await values.wait_for(ours)
        await post(http, item(series, "c", 100.04, snap, observed_after=0.5))
        await values.wait_for(ours, count=2)
        event_id = decode(first)["event_id"]
        # Redelivery: the relay crashed after the broker acknowledged, before marking it.
        marked = await pool.execute(
            "UPDATE outbox SET published_at = NULL WHERE event_id = $1", event_id
        )
        assert marked == "UPDATE 1"
        records = await values.wait_for(ours, count=3)

    events = [decode(r) for r in records]
    assert [e["version"] for e in events] == [1, 2, 1]
    assert [e["supersedes"] for e in events] == [None, 1, None]
    assert events[2] == events[0]
    assert events[2]["event_id"] == event_id != events[1]["event_id"]
    assert [header(r, EVENT_ID_HEADER) for r in records] == [e["event_id"] for e in events]
    assert {r.key for r in records} == {series.encode()}


async def test_audit_records_are_mirrored_on_the_audit_topic_in_chain_order(
    http: httpx.AsyncClient,
    worker: Service,
    scheduler: Service,
    settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    series, snap = unique_series(), current_snap()

    async with TopicTail(settings, settings.kafka.audit_topic) as trail:
        await configure(http, series, expected_sources=ABC)
        await post(
            http,
            item(series, "a", 100.00, snap),
            item(series, "b", 100.02, snap),
            item(series, "c", 99.99, snap),
        )
        records = await trail.wait_for(
            lambda e: str(e.get("entity_id", "")).startswith(series), count=4
        )

    events = [decode(r) for r in records]
    assert [e["action"] for e in events] == [
        "series.created",
        "observations.accepted",
        "official_value.created",
        "event.published",
    ]
    stored = await pool.fetch(
        "SELECT seq, hash FROM audit_log WHERE entity_id LIKE $1 ORDER BY seq", series + "%"
    )
    assert [(e["seq"], e["hash"]) for e in events] == [(r["seq"], r["hash"]) for r in stored]
    assert {r.key for r in records} == {series.encode()}
    assert all(
        header(r, EVENT_ID_HEADER) == e["event_id"] for r, e in zip(records, events, strict=True)
    )


async def test_audit_verify_passes_after_the_scenarios(
    settings: Settings, worker: Service, scheduler: Service, pool: asyncpg.Pool
) -> None:
    process = await asyncio.create_subprocess_exec(
        QIS,
        "audit",
        "verify",
        env=service_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
    total = await pool.fetchval("SELECT count(*) FROM audit_log")
    output = stdout.decode()
    assert process.returncode == 0, output + stderr.decode()
    assert output.startswith("OK: ")
    assert 0 < int(output.split()[1]) <= total
