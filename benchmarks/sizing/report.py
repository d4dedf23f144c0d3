"""The sizing report: assumptions first, then measurements, derived load, checks.

Markdown for people, JSON (the same content) for machines and for re-running the model
on stored measurements (`qis sizing --from-json`).
"""

from __future__ import annotations

import math

import msgspec

from benchmarks.sizing.model import (
    CATALOGUE,
    GB,
    GIB,
    Assumptions,
    Check,
    Deployment,
    Measurements,
    Workload,
    api_pods,
    buffer_cache_bytes,
    cache_classes,
    cache_memory_bytes,
    evaluate,
    journal_rows_per_version,
    max_connections,
    project_cache,
    wal_per_observation,
)

WORKLOAD_NOTES: dict[str, str] = {
    "series": "reference-data series (ETH-USD, EURUSD, an index, a rate ...)",
    "sources_per_series": "sources reporting each snap",
    "snap_interval_seconds": "every series snaps at the same instants, this often",
    "drain_seconds": "a snap's observations are stored and reconciled within this long",
    "revision_share": "snaps that get a version 2 (late or corrected source)",
    "suspect_share": "versions below the 0.95 quality threshold (alert events)",
    "query_rate_per_second": "API reads per second at peak",
    "read_mix": "share of reads per kind",
    "zipf_s": "popularity of series: rank k is read in proportion to 1/k^s",
    "hot_snaps_per_series": "point reads target this many recent snaps per series (a day)",
    "as_of_times_per_snap": "distinct as_of values clients use for one snap",
    "history_ranges_per_series": "distinct history pages (from, to, granularity) per series",
    "quality_windows_per_series": "distinct quality windows per series (1h, 1d, 7d)",
    "history_page_items": "points per history page",
    "read_horizon_days": "official values the readers keep touching",
    "read_working_set_share": "the readers' hot set: series receiving this share of reads",
    "retention_observations_days": "raw observations kept in Aurora (then S3 only)",
    "retention_official_values_days": "official values kept in Aurora",
    "retention_audit_days": "audit records kept in Aurora",
    "outbox_retention_days": "published outbox rows kept",
    "official_ttl": "L2 TTL of official values and history (seed: 300 s)",
    "quality_ttl": "L2 TTL of quality summaries (seed: 600 s)",
    "immutable_ttl": "L2 TTL of immutable results (seed compute: 1800-3600 s)",
    "l1_mutable_ttl": "in-process L1 TTL of mutable results",
    "l1_immutable_ttl": "in-process L1 TTL of immutable results",
    "l1_max_entries": "L1 bound per API process (entries)",
    "l1_max_bytes": "L1 bound per API process (bytes)",
}

ASSUMPTION_SOURCES: dict[str, str] = {
    "cache_reserved_memory_share": "ElastiCache default reserved-memory-percent (AWS)",
    "cache_node_ops_per_second": "assumption: one Redis primary, small commands",
    "aurora_connection_bytes": "Aurora PG max_connections formula (AWS docs)",
    "aurora_max_connections_cap": "Aurora PG max_connections formula (AWS docs)",
    "aurora_reserved_connections": "AWS: keep >= 3 for AWS automation",
    "reader_connection_imbalance": "assumption: reader endpoint DNS round robin",
    "buffer_cache_divisor": "Aurora PG default shared_buffers formula",
    "buffer_cache_offset_pages": "Aurora PG default shared_buffers formula",
    "aurora_cpu_factor": "assumption: local core ~ Graviton2 vCPU",
    "aurora_storage_copies": "Aurora: 6 copies over 3 AZs",
    "aurora_write_io_bytes": "AWS blog 'Planning I/O in Amazon Aurora'",
    "aurora_io_price_per_million": "Aurora Standard I/O price, us-east-1",
    "monthly_budget_usd": "the seed's QIS monthly cost budget",
    "io_budget_share": "AWS: above 25 % of spend, consider I/O-Optimized",
    "aurora_max_volume_bytes": "Aurora cluster volume limit (128 TiB)",
}


class Alternative(msgspec.Struct, frozen=True, kw_only=True):
    """For one component: the seed's instance type and the smallest that passes its checks."""

    component: str
    checks: list[str]
    seed_choice: str
    seed_passes: bool
    smallest_passing: str | None
    break_even: str  # of the smallest passing type's tightest check


class SizingReport(msgspec.Struct, frozen=True, kw_only=True):
    workload: Workload
    deployment: Deployment
    assumptions: Assumptions
    measurements: Measurements
    derived: dict[str, float]
    checks: list[Check]
    alternatives: list[Alternative] = msgspec.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


_COMPONENTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # component: (deployment field, catalogue prefix, checks that depend on it)
    "ElastiCache node": (
        "cache_node_type",
        "cache.r6g.",
        ("cache.memory", "cache.ops", "cache.network"),
    ),
    "Aurora writer": (
        "aurora_writer",
        "db.r6g.",
        (
            "aurora.connections.writer",
            "aurora.writer.cpu",
            "aurora.writer.memory",
            "aurora.writer.throughput",
        ),
    ),
    "Aurora readers": (
        "aurora_readers",
        "db.r6g.",
        ("aurora.connections.reader", "aurora.readers.cpu", "aurora.readers.memory"),
    ),
}


def right_size(
    workload: Workload, deployment: Deployment, m: Measurements, a: Assumptions
) -> list[Alternative]:
    """Per component, the smallest catalogue type (same family) passing its checks."""
    out = []
    for component, (field, family, names) in _COMPONENTS.items():
        seed_choice = getattr(deployment, field)
        current = seed_choice[0] if isinstance(seed_choice, list) else seed_choice
        seed_checks = [
            c for c in evaluate(workload, deployment, m, a, break_even=False) if c.name in names
        ]
        candidates = sorted(
            (t for t in CATALOGUE if t.startswith(family)),
            key=lambda t: (CATALOGUE[t].vcpu, CATALOGUE[t].memory_gib),
        )
        smallest: str | None = None
        break_even = "-"
        for candidate in candidates:
            value: str | list[str] = (
                [candidate] * len(seed_choice) if isinstance(seed_choice, list) else candidate
            )
            trial = msgspec.structs.replace(deployment, **{field: value})
            checks = [
                c for c in evaluate(workload, trial, m, a, break_even=False) if c.name in names
            ]
            if all(c.passed for c in checks):
                smallest = candidate
                checks = [c for c in evaluate(workload, trial, m, a) if c.name in names]
                tightest = min(checks, key=lambda c: c.break_even_factor or math.inf)
                break_even = f"{tightest.name} at {tightest.break_even}"
                break
        out.append(
            Alternative(
                component=component,
                checks=list(names),
                seed_choice=f"{len(seed_choice)} x {current}"
                if isinstance(seed_choice, list)
                else current,
                seed_passes=all(c.passed for c in seed_checks),
                smallest_passing=smallest,
                break_even=break_even,
            )
        )
    return out


def build_report(
    workload: Workload,
    deployment: Deployment,
    measurements: Measurements,
    assumptions: Assumptions,
    checks: list[Check],
) -> SizingReport:
    """The report, with the intermediate quantities a reader needs to follow the checks."""
    pods = api_pods(workload, deployment)
    cache = project_cache(workload, cache_classes(workload, measurements), pods)
    audit, outbox = journal_rows_per_version(workload, measurements)
    writer = CATALOGUE[deployment.aurora_writer]
    reader = CATALOGUE[deployment.aurora_readers[0]]
    node = CATALOGUE[deployment.cache_node_type]
    rate = sum(p.rate for p in cache)
    derived: dict[str, float] = {
        "observations_per_day": workload.observations_per_day,
        "versions_per_day": workload.versions_per_day,
        "peak_observations_per_second": workload.peak_observations_per_second,
        "api_pods": pods,
        "l1_hit_ratio": sum(p.rate * p.l1_hit_ratio for p in cache) / rate if rate else 0.0,
        "db_reads_per_second": sum(p.db_loads_per_second for p in cache),
        "cache_hit_ratio": 1 - sum(p.db_loads_per_second for p in cache) / rate if rate else 0.0,
        "l2_resident_entries": sum(p.l2_entries for p in cache),
        "audit_rows_per_version": audit,
        "outbox_rows_per_version": outbox,
        "wal_bytes_per_observation": wal_per_observation(workload, measurements),
        "writer_max_connections": max_connections(writer, assumptions),
        "reader_max_connections": max_connections(reader, assumptions),
        "writer_buffer_cache_bytes": buffer_cache_bytes(writer, assumptions),
        "reader_buffer_cache_bytes": buffer_cache_bytes(reader, assumptions),
        "cache_maxmemory_bytes": cache_memory_bytes(node, assumptions),
    }
    return SizingReport(
        workload=workload,
        deployment=deployment,
        assumptions=assumptions,
        measurements=measurements,
        derived=derived,
        checks=checks,
        alternatives=right_size(workload, deployment, measurements, assumptions),
    )


def to_json(report: SizingReport) -> bytes:
    """The whole report; `checks` carry their utilisation too."""
    raw = msgspec.to_builtins(report)
    raw["passed"] = report.passed
    for check, out in zip(report.checks, raw["checks"], strict=True):
        out["utilisation"] = None if math.isinf(check.utilisation) else check.utilisation
    return msgspec.json.format(msgspec.json.encode(raw), indent=2)


def quantity(value: float, unit: str) -> str:
    """A value in the unit a reader expects (GiB, MB/s, ...)."""
    if unit == "bytes":
        return f"{value / GIB:,.2f} GiB" if value >= GIB / 10 else f"{value / 2**20:,.1f} MiB"
    if unit == "bytes/s":
        return f"{value / 1e6:,.1f} MB/s"
    if unit == "USD/month":
        return f"${value:,.0f}/month"
    if unit in ("vCPU", "worker cores"):
        return f"{value:,.2f} {unit}"
    return f"{value:,.0f} {unit}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def to_markdown(report: SizingReport) -> str:
    w, d, a, m = report.workload, report.deployment, report.assumptions, report.measurements
    out = [
        "# Sizing report: ElastiCache and Aurora against the seed's choices",
        "",
        f"Result: **{sum(c.passed for c in report.checks)} of {len(report.checks)} checks pass**"
        f" at the modelled workload. Measurements taken {m.measured_at} on "
        f"{m.environment.get('cpu', '?')} ({m.environment.get('cores', '?')} cores), "
        f"PostgreSQL {m.environment.get('postgresql', '?')}, Redis "
        f"{m.environment.get('redis', '?')}.",
        "",
        "## Assumptions",
        "",
        "### Workload model",
        "",
    ]
    rows = []
    for name, value in msgspec.structs.asdict(w).items():
        if isinstance(value, msgspec.Struct):
            value = ", ".join(f"{k} {v:g}" for k, v in msgspec.structs.asdict(value).items())
        rows.append(
            [
                f"`{name}`",
                f"{value:,}" if isinstance(value, int) else str(value),
                WORKLOAD_NOTES.get(name, ""),
            ]
        )
    out += _table(["parameter", "value", "meaning"], rows)
    out += ["", "### Deployment under test (the seed's choices, the service's pools)", ""]
    out += _table(
        ["parameter", "value"],
        [[f"`{k}`", str(v)] for k, v in msgspec.structs.asdict(d).items()],
    )
    out += ["", "### Platform facts and targets", ""]
    out += _table(
        ["assumption", "value", "source"],
        [
            [
                f"`{k}`",
                f"{v:,}" if isinstance(v, int) else f"{v:g}",
                ASSUMPTION_SOURCES.get(k, "target"),
            ]
            for k, v in msgspec.structs.asdict(a).items()
        ],
    )
    out += ["", "Instance catalogue used:", ""]
    out += _table(
        ["type", "vCPU", "memory GiB", "baseline Gbit/s"],
        [
            [name, str(i.vcpu), f"{i.memory_gib:g}", f"{i.baseline_gbps:g}"]
            for name, i in CATALOGUE.items()
            if name in (d.cache_node_type, d.aurora_writer, *d.aurora_readers)
        ],
    )
    out += ["", "## Measured unit costs (local stack)", "", "### Redis: bytes per cache entry", ""]
    out += _table(
        ["kind", "key (seed pattern)", "value B", "MEMORY USAGE B", "used_memory B/entry"],
        [
            [
                e.kind,
                f"`{e.example_key}`",
                f"{e.value_bytes:,}",
                f"{e.memory_usage_bytes:,}",
                f"{e.bytes_per_entry:,.0f}",
            ]
            for e in m.cache_entries
        ],
    )
    out += ["", "### PostgreSQL: bytes per row (indexes included) and WAL per row", ""]
    out += _table(
        ["table", "rows", "heap B/row", "indexes B/row", "total B/row", "WAL B/row"],
        [
            [
                t.table,
                f"{t.rows:,}",
                f"{t.heap_bytes / t.rows:,.0f}",
                ", ".join(f"{k} {v / t.rows:,.0f}" for k, v in t.index_bytes.items()),
                f"{t.bytes_per_row:,.0f}",
                f"{t.wal_per_row:,.0f}",
            ]
            for t in m.tables
        ],
    )
    wp = m.write_path
    db_cpu = wp.db_cpu_seconds_per_observation
    out += [
        "",
        "### Worker write path (store + reconcile + journal, one transaction per batch)",
        "",
        f"- {wp.batches} batches, {wp.observations:,} observations -> {wp.versions:,} versions, "
        f"{wp.audit_rows:,} audit rows, {wp.outbox_rows:,} outbox rows, {wp.snap_rows:,} snap rows",
        f"- worker (Python) CPU: {wp.worker_cpu_seconds:.2f} s -> "
        f"**{wp.worker_rows_per_cpu_second:,.0f} observations per worker core-second**",
        "- database CPU: "
        + (
            f"{wp.db_cpu_seconds:.2f} s -> **{1 / db_cpu:,.0f} observations per database "
            f"core-second** ({db_cpu * 1e6:.0f} us each)"
            if db_cpu is not None and wp.db_cpu_seconds is not None
            else "not measured (database not on this machine)"
        ),
        f"- wall clock on one connection: {wp.observations / wp.wall_seconds:,.0f} observations/s",
        "",
        "### Query cost per request on a cache miss (reader)",
        "",
    ]
    out += _table(
        ["read", "calls", "wall ms", "database CPU ms", "rows"],
        [
            [
                q.kind,
                f"{q.calls:,}",
                f"{q.wall_ms:.3f}",
                "-" if q.db_cpu_ms is None else f"{q.db_cpu_ms:.3f}",
                f"{q.rows:g}",
            ]
            for q in m.queries
        ],
    )
    dv = report.derived
    out += [
        "",
        "## Derived load at the modelled workload",
        "",
        f"- {dv['observations_per_day']:,.0f} observations/day, {dv['versions_per_day']:,.0f} "
        f"versions/day; ingestion peak {dv['peak_observations_per_second']:,.0f} observations/s",
        f"- {dv['audit_rows_per_version']:.2f} audit rows and {dv['outbox_rows_per_version']:.2f} "
        f"outbox rows per version; {dv['wal_bytes_per_observation']:,.0f} B of WAL per observation",
        f"- {dv['api_pods']:.0f} API pods; L1 hit ratio {dv['l1_hit_ratio']:.1%}, L1+L2 hit ratio "
        f"{dv['cache_hit_ratio']:.1%}, {dv['db_reads_per_second']:,.0f} reads/s reach PostgreSQL; "
        f"{dv['l2_resident_entries']:,.0f} L2 entries resident",
        f"- max_connections: writer {dv['writer_max_connections']:,.0f}, reader "
        f"{dv['reader_max_connections']:,.0f}; shared_buffers: writer "
        f"{dv['writer_buffer_cache_bytes'] / GB:,.1f} GB, reader "
        f"{dv['reader_buffer_cache_bytes'] / GB:,.1f} GB; ElastiCache maxmemory "
        f"{dv['cache_maxmemory_bytes'] / GIB:,.1f} GiB per shard",
        "",
        "## Checks",
        "",
    ]
    out += _table(
        ["check", "component", "projected", "limit", "use", "pass if <=", "result", "runs out at"],
        [
            [
                f"`{c.name}`",
                c.component,
                quantity(c.projected, c.unit),
                quantity(c.limit, c.unit),
                f"{c.utilisation:.0%}",
                f"{c.target:.0%}",
                "PASS" if c.passed else "**FAIL**",
                c.break_even,
            ]
            for c in report.checks
        ],
    )
    out += ["", "### Smallest instance type of the same family that passes", ""]
    out += _table(
        ["component", "seed's choice", "passes", "smallest passing", "its tightest check"],
        [
            [
                alt.component,
                alt.seed_choice,
                "yes" if alt.seed_passes else "**no**",
                alt.smallest_passing or "none in the catalogue: needs a design change",
                alt.break_even,
            ]
            for alt in report.alternatives
        ],
    )
    out += ["", "### How each figure was obtained", ""]
    out += [f"- `{c.name}` — {c.question} {c.detail}." for c in report.checks]
    out.append("")
    return "\n".join(out)
