"""The sizing model on fixed measurements: formulas, checks, break-even points."""

from __future__ import annotations

import math

import msgspec
import pytest

from benchmarks.sizing.model import (
    CATALOGUE,
    GIB,
    Assumptions,
    CacheClass,
    Deployment,
    InstanceType,
    Workload,
    buffer_cache_bytes,
    evaluate,
    journal_rows_per_version,
    max_connections,
    project_cache,
    wal_per_observation,
    zipf_head_fraction,
)
from tests.unit.sizing.fixtures import measurements

SMALL = Workload(series=1_000, query_rate_per_second=500, retention_audit_days=30)


def by_name(workload: Workload, deployment: Deployment | None = None) -> dict[str, object]:
    return {
        c.name: c
        for c in evaluate(workload, deployment or Deployment(), measurements(), break_even=False)
    }


def test_a_small_workload_passes_every_check() -> None:
    checks = evaluate(SMALL, Deployment(), measurements())

    assert {c.name for c in checks} >= {
        "cache.memory",
        "cache.ops",
        "cache.network",
        "aurora.connections.writer",
        "aurora.connections.reader",
        "aurora.writer.cpu",
        "aurora.writer.memory",
        "aurora.writer.throughput",
        "aurora.writer.iops",
        "aurora.readers.cpu",
        "aurora.readers.memory",
        "workers.throughput",
        "aurora.storage",
    }
    assert [c.name for c in checks if not c.passed] == []


def test_a_check_fails_once_the_workload_grows_past_its_break_even() -> None:
    (memory,) = [
        c for c in evaluate(SMALL, Deployment(), measurements()) if c.name == "cache.memory"
    ]
    assert memory.passed
    factor = memory.break_even_factor
    assert factor is not None
    assert factor > 1

    def utilisation(growth: float) -> float:
        (check,) = [
            c
            for c in evaluate(SMALL.scaled(growth), Deployment(), measurements(), break_even=False)
            if c.name == "cache.memory"
        ]
        return check.utilisation

    assert utilisation(factor * 0.98) < 1.0 <= utilisation(factor * 1.02)
    grown = [
        c
        for c in evaluate(SMALL.scaled(factor * 1.1), Deployment(), measurements())
        if c.name == "cache.memory"
    ]
    assert not grown[0].passed


def test_the_ttl_cache_formula_for_one_key() -> None:
    # rate 0.1/s, TTL 30 s: lT = 3 -> hit ratio 3/4, resident 3/4 of the time,
    # one load per cycle of T + 1/l = 40 s.
    workload = Workload(series=1, zipf_s=1.0, l1_max_entries=10**9, l1_max_bytes=10**12)
    (p,) = project_cache(
        workload,
        [CacheClass(kind="k", rate=0.1, keys_per_series=1, l2_ttl=30, l1_ttl=30, entry_bytes=100)],
        pods=1,
    )

    assert p.l2_entries == pytest.approx(0.75)
    assert p.l2_bytes == pytest.approx(75)
    assert p.db_loads_per_second == pytest.approx(0.1 / 4)
    assert p.l1_hit_ratio == pytest.approx(0.75)


def test_zipf_skew_concentrates_reads_on_a_few_series() -> None:
    assert zipf_head_fraction(10_000, 0.0, 0.9) == pytest.approx(0.9, abs=1e-3)
    # s = 1 over 10,000 series: H(k) / H(N) = 0.9 at k of about 3,700 (gamma + ln k)
    harmonic = sum(1 / k for k in range(1, 10_001))
    k = math.exp(0.9 * harmonic - 0.5772)
    assert zipf_head_fraction(10_000, 1.0, 0.9) == pytest.approx(k / 10_000, rel=0.02)


def test_aurora_max_connections_follows_the_documented_formula() -> None:
    a = Assumptions()
    # AWS's worked example: db.r4.large, 15.25 GiB -> 1600
    assert max_connections(InstanceType(vcpu=2, memory_gib=15.25, baseline_gbps=0.75), a) == 1600
    assert max_connections(CATALOGUE["db.r6g.xlarge"], a) == 3357
    assert max_connections(CATALOGUE["db.r6g.2xlarge"], a) == 5000  # capped
    assert buffer_cache_bytes(CATALOGUE["db.r6g.2xlarge"], a) == pytest.approx(
        (64e9 / 12038 - 50003) * 8192
    )


def test_the_writer_connection_budget_is_pods_times_pools() -> None:
    deployment = Deployment(api_pods_min=10, worker_pods=12, scheduler_pods=2, pool_max_size=10)
    check = by_name(SMALL, deployment)["aurora.connections.writer"]

    # 10 api x (10 + 1 listener) + 12 workers x 10 + 2 schedulers x (10 + 1) + 5 admin
    assert check.projected == 110 + 120 + 22 + 5  # type: ignore[attr-defined]
    assert check.limit == 5000 - 3  # type: ignore[attr-defined]


def test_with_cluster_mode_disabled_more_replicas_add_no_memory() -> None:
    six = by_name(SMALL, Deployment(cache_nodes=6))["cache.memory"]
    two = by_name(SMALL, Deployment(cache_nodes=2))["cache.memory"]
    sharded = by_name(SMALL, Deployment(cache_nodes=6, cache_shards=3))["cache.memory"]

    usable = 52.82 * GIB * 0.75
    assert six.limit == two.limit == pytest.approx(usable)  # type: ignore[attr-defined]
    assert sharded.limit == pytest.approx(3 * usable)  # type: ignore[attr-defined]


def test_journal_rows_and_wal_per_observation_include_the_relay() -> None:
    workload = Workload(suspect_share=0.0, revision_share=0.0, sources_per_series=5)

    audit, outbox = journal_rows_per_version(workload, measurements())

    # measured: 1 accepted + 1 created; relay adds 1 event.published; outbox: the one
    # domain event (audit records reach the audit topic from the trail, not the outbox)
    assert audit == pytest.approx(3.0)
    assert outbox == pytest.approx(1.0)
    per_version = 800 + 3 * 1000 + 1 * 1200 + 2 * 200
    assert wal_per_observation(workload, measurements()) == pytest.approx(400 + per_version / 5)


def test_the_writer_memory_is_the_last_hour_and_each_series_insert_edge() -> None:
    m = measurements()
    short = by_name(Workload(retention_audit_days=1, retention_observations_days=1))
    long = by_name(Workload(retention_audit_days=400, retention_observations_days=90))
    check = long["aurora.writer.memory"]

    # no index has a random key over the history: the retention does not matter
    assert check.projected == short["aurora.writer.memory"].projected  # type: ignore[attr-defined]
    workload = Workload()
    audit, outbox = journal_rows_per_version(workload, m)
    versions = workload.versions_per_day
    hour = (
        workload.observations_per_day * m.table("observations").bytes_per_row
        + versions * m.table("official_values").bytes_per_row
        + versions * m.table("snaps").bytes_per_row
        + versions * audit * m.table("audit_log").bytes_per_row
        + versions * outbox * m.table("outbox").bytes_per_row
    ) / 24
    edges = 10_000 * 5 * 8192 * 2  # 5 series-keyed indexes in the fixture, 2 pages each
    outbox_keys = versions * outbox * workload.outbox_retention_days * 90
    assert check.projected == pytest.approx(hour + edges + outbox_keys)  # type: ignore[attr-defined]
    assert check.passed  # type: ignore[attr-defined]
    # ten times the series: ten times the edges and the hourly volume
    assert by_name(Workload(series=100_000))["aurora.writer.memory"].projected == pytest.approx(  # type: ignore[attr-defined]
        10 * check.projected  # type: ignore[attr-defined]
    )


def test_workload_scaling_grows_series_and_query_rate_together() -> None:
    grown = Workload().scaled(2.5)

    assert (grown.series, grown.query_rate_per_second) == (25_000, 5_000.0)
    assert msgspec.structs.replace(grown, series=10_000).read_mix == Workload().read_mix
