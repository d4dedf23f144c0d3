"""Which snaps of a worker batch get the custom spans: those of sampled requests only."""

from __future__ import annotations

from collections.abc import Collection

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler

import app.services.reconcile as reconcile_module
from app.services.reconcile import reconciliation_stage
from tests.unit.services.fakes import FakeDatabase
from tests.unit.services.test_reconcile import ABC, SNAP, TOPICS, configure, obs

CUSTOM = {"multi-source-reconciliation", "quality-assessment"}


async def run_batch(
    monkeypatch: pytest.MonkeyPatch, sampler: Sampler, traced: Collection[str] | None
) -> list[tuple[str, str]]:
    """One batch of two series under a `process` span; (span name, series) of custom spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    monkeypatch.setattr(reconcile_module, "_tracer", tracer)
    db = FakeDatabase()
    configure(db, ABC, "ETH-USD")
    configure(db, ABC, "BTC-USD")
    batch = [obs(s, 100.0, series=series) for series in ("ETH-USD", "BTC-USD") for s in "abc"]
    stage = reconciliation_stage(lambda store: store, topics=TOPICS)
    with tracer.start_as_current_span("process"):
        async with db.transaction() as store:
            await stage(store, db.store_observations(batch), traced)
    assert len(db.versions("ETH-USD", SNAP)) == len(db.versions("BTC-USD", SNAP)) == 1
    return sorted(
        (span.name, str((span.attributes or {}).get("reference-data-id")))
        for span in exporter.get_finished_spans()
        if span.name in CUSTOM
    )


async def test_only_snaps_with_an_observation_from_a_sampled_record_are_traced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sampled = {obs("b", 100.0, series="BTC-USD").observation_id}

    spans = await run_batch(monkeypatch, ALWAYS_ON, sampled)

    assert spans == [
        ("multi-source-reconciliation", "BTC-USD"),
        ("quality-assessment", "None"),  # (it carries no series attribute)
    ]


async def test_without_a_selection_every_snap_of_a_recorded_batch_is_traced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spans = await run_batch(monkeypatch, ALWAYS_ON, None)

    assert [name for name, _ in spans].count("multi-source-reconciliation") == 2
    assert [name for name, _ in spans].count("quality-assessment") == 2


async def test_an_unrecorded_batch_makes_no_custom_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    everything = {o.observation_id for o in [obs(s, 100.0) for s in "abc"]}
    assert await run_batch(monkeypatch, ALWAYS_OFF, everything) == []
