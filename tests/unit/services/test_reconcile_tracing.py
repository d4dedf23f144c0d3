"""Which snaps of a worker batch get the custom spans: those of sampled requests only."""

from __future__ import annotations

from collections.abc import Collection

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler

from app.services.reconcile import MAX_TRACED_SNAPS, reconciliation_stage
from app.telemetry.pipeline_tracing import PipelineTracing
from tests.unit.services.fakes import FakeDatabase, RecordingMetrics, RecordingTracing
from tests.unit.services.test_reconcile import ABC, SNAP, TOPICS, configure, obs

CUSTOM = {"multi-source-reconciliation", "quality-assessment"}


async def run_batch(sampler: Sampler, traced: Collection[str] | None) -> list[tuple[str, str]]:
    """One batch of two series under a `process` span; (span name, series) of custom spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    db = FakeDatabase()
    configure(db, ABC, "ETH-USD")
    configure(db, ABC, "BTC-USD")
    batch = [obs(s, 100.0, series=series) for series in ("ETH-USD", "BTC-USD") for s in "abc"]
    stage = reconciliation_stage(
        lambda store: store, topics=TOPICS, tracing=PipelineTracing(tracer)
    )
    with tracer.start_as_current_span("process"):
        async with db.transaction() as store:
            await stage(store, db.store_observations(batch), traced)
    assert len(db.versions("ETH-USD", SNAP)) == len(db.versions("BTC-USD", SNAP)) == 1
    return sorted(
        (span.name, str((span.attributes or {}).get("reference-data-id")))
        for span in exporter.get_finished_spans()
        if span.name in CUSTOM
    )


async def test_only_snaps_with_an_observation_from_a_sampled_record_are_traced() -> None:
    sampled = {obs("b", 100.0, series="BTC-USD").observation_id}

    spans = await run_batch(ALWAYS_ON, sampled)

    assert spans == [
        ("multi-source-reconciliation", "BTC-USD"),
        ("quality-assessment", "None"),  # (it carries no series attribute)
    ]


async def test_without_a_selection_every_snap_of_a_recorded_batch_is_traced() -> None:
    spans = await run_batch(ALWAYS_ON, None)

    assert [name for name, _ in spans].count("multi-source-reconciliation") == 2
    assert [name for name, _ in spans].count("quality-assessment") == 2


async def test_an_unrecorded_batch_makes_no_custom_spans() -> None:
    everything = {o.observation_id for o in [obs(s, 100.0) for s in "abc"]}
    assert await run_batch(ALWAYS_OFF, everything) == []


async def test_each_snap_is_reconciled_and_assessed_in_its_own_step() -> None:
    """The service opens one reconciliation and one assessment step per snap, traced for
    the sampled snaps only, and reports to each what the adapter annotates."""
    db = FakeDatabase()
    configure(db, ABC, "ETH-USD")
    configure(db, ABC, "BTC-USD")
    batch = [
        obs(s, v, series=series)
        for series in ("ETH-USD", "BTC-USD")
        for s, v in (("a", 100.0), ("b", 100.02), ("c", 99.99))
    ]
    sampled = {obs("b", 100.02, series="BTC-USD").observation_id}
    tracing = RecordingTracing()
    stage = reconciliation_stage(lambda store: store, topics=TOPICS, tracing=tracing)

    async with db.transaction() as store:
        await stage(store, db.store_observations(batch), sampled)

    assert [(step.name, step.key, step.traced) for step in tracing.steps] == [
        ("multi-source-reconciliation", ("BTC-USD", SNAP), True),
        ("quality-assessment", ("BTC-USD", SNAP), True),
        ("multi-source-reconciliation", ("ETH-USD", SNAP), False),
        ("quality-assessment", ("ETH-USD", SNAP), False),
    ]
    reconciled, assessed = tracing.steps[0].recorded, tracing.steps[1].recorded
    (version,) = db.versions("BTC-USD", SNAP)
    assert reconciled["config"] == ABC
    assert sorted((o.source, o.value) for o in reconciled["observations"]) == [
        ("a", 100.0),
        ("b", 100.02),
        ("c", 99.99),
    ]
    assert reconciled["result"].value == version.value == 100.0
    assert assessed["result"] is reconciled["result"]
    assert (assessed["decision"].publish, assessed["decision"].reason) == (True, "first_version")
    # The events carry the trace context of the work that wrote them.
    assert db.state.outbox
    assert {tuple(m.headers.items()) for m in db.state.outbox} == {(("traceparent", "00-test-01"),)}


async def test_under_an_unrecorded_span_no_step_is_traced_and_no_context_is_written() -> None:
    db = FakeDatabase()
    configure(db, ABC)
    tracing = RecordingTracing(recording=False)
    stage = reconciliation_stage(lambda store: store, topics=TOPICS, tracing=tracing)

    async with db.transaction() as store:
        await stage(store, db.store_observations([obs(s, 100.0) for s in "abc"]), None)

    assert [(step.name, step.traced) for step in tracing.steps] == [
        ("multi-source-reconciliation", False),
        ("quality-assessment", False),
    ]
    assert db.state.outbox
    assert all(m.headers == {} for m in db.state.outbox)


async def test_metrics_count_each_publication_with_its_quality() -> None:
    db = FakeDatabase()
    configure(db, ABC)
    metrics = RecordingMetrics()
    stage = reconciliation_stage(lambda store: store, topics=TOPICS, metrics=metrics)

    async with db.transaction() as store:
        await stage(store, db.store_observations([obs(s, 100.0) for s in "abc"]), None)

    assert metrics.calls == [
        ("reconciliation", (True,)),
        ("quality_score", (1.0, "ETH-USD")),
    ]


async def test_one_call_traces_at_most_max_traced_snaps_the_first_in_series_order() -> None:
    series = [f"S-{n:02d}" for n in range(MAX_TRACED_SNAPS + 4)]
    db = FakeDatabase()
    batch = [obs(s, 100.0, series=name) for name in reversed(series) for s in "abc"]
    tracing = RecordingTracing()
    stage = reconciliation_stage(lambda store: store, topics=TOPICS, tracing=tracing)

    async with db.transaction() as store:
        await stage(store, db.store_observations(batch), {o.observation_id for o in batch})

    traced = [step.key[0] for step in tracing.steps if step.traced]
    assert traced == [name for name in series[:MAX_TRACED_SNAPS] for _ in range(2)]
    assert {step.key[0] for step in tracing.steps if not step.traced} == set(
        series[MAX_TRACED_SNAPS:]
    )
    assert all(len(db.versions(name, SNAP)) == 1 for name in series)  # all reconciled
