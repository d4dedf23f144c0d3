"""Three workers share a topic while workers join, leave gracefully and crash."""

from __future__ import annotations

from benchmarks.e2e.scale_out import scale_out


async def test_rebalances_under_load_keep_every_effect_exactly_once() -> None:
    outcome = await scale_out(seconds=16, rate=600, workers=3)

    # every check of the run: stored once, versions 1..n and complete, events in order
    assert outcome.problems == []
    assert [(w.name, w.how) for w in outcome.runs] == [
        ("worker-1", "running"),
        ("worker-2", "SIGTERM"),
        ("worker-3", "SIGKILL"),
        ("worker-4", "running"),
        ("worker-5", "running"),
    ]
    # what each worker consumed adds up to the topic's records: one per partition a
    # request touched (50 series a request, 12 partitions: between 1 and 12 a request)
    assert sum(w.records for w in outcome.runs) == outcome.records
    requests = 600 * 16 // 50
    assert requests < outcome.records <= 12 * requests
    assert outcome.events >= 600 * 16 // 5  # at least one version per (series, snap)
