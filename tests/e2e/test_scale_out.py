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
    # the consumed positions add up to every record the api produced (one per series of
    # a request, 50 series a request: one record per observation)
    assert sum(w.records for w in outcome.runs) == 600 * 16
    assert outcome.events >= 600 * 16 // 5  # at least one version per (series, snap)
