"""Capacity model: measured unit costs x a workload model -> checks of the seed's sizing.

Pure (no I/O, no clock). Inputs:

- `Measurements`: unit costs measured on the local stack by `benchmarks.sizing.measure` (bytes
  per cache entry, bytes and WAL per row, worker and database CPU per observation, CPU
  per query), or loaded from a JSON file;
- `Workload`: the documented workload model (series, sources, snaps, query rate, mix
  and skew, retention, TTLs);
- `Deployment`: the seed's choices (ElastiCache and Aurora instances, pods, pools);
- `Assumptions`: platform facts and targets, each with its source.

`evaluate()` returns one `Check` per row of the table `CHECKS` (name, component,
question, unit, target, and the `project_*` function giving the projected value, the
limit and how they were found at a workload), with the utilisation, pass/fail at the
modelled workload, and the *break-even growth*: the factor by which the business may
grow (series and query rate together) before that resource runs out (utilisation 1.0),
found by bisection because several checks are non-linear (cache working sets under Zipf
skew).

Cache model. Each query class has a key universe per series (e.g. latest: one key per hot
snap) and a TTL; series popularity is Zipf(s); within a series keys are equally likely.
For a TTL cache (entry created on a miss, expiring T later) fed by Poisson requests of
rate l to one key, each cycle is one miss, then l*T hits on average, then a wait of
1/l: the hit ratio is lT/(1+lT) and the probability that the key is resident is the
same lT/(1+lT). Summed over keys this gives the resident entries (memory), the hit
ratios of L1 (per API pod, rate divided by pods) and L2, and the database loads (one per
L2 cycle). Invalidations by publications are ignored (they touch the current snap only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from operator import attrgetter
from typing import Literal, NamedTuple, TypeVar

import msgspec

GIB = 1024**3
GB = 1e9
SECONDS_PER_DAY = 86_400
SECONDS_PER_MONTH = 730 * 3600

QueryKind = Literal["latest", "version", "as_of", "history", "quality"]
QUERY_KINDS: tuple[QueryKind, ...] = ("latest", "version", "as_of", "history", "quality")


class _Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


# -- measurements (produced by benchmarks.sizing.measure) ----------------------------------------


class CacheEntrySize(_Frozen, frozen=True):
    """One kind of L2 entry, written like the query service writes it."""

    kind: str
    example_key: str
    value_bytes: int
    memory_usage_bytes: int  # Redis MEMORY USAGE of one key
    bytes_per_entry: float  # used_memory growth per key (includes dict and expiry overhead)


class TableFootprint(_Frozen, frozen=True):
    """Rows of one table written like the worker writes them, in a scratch copy."""

    table: str
    rows: int
    heap_bytes: int
    index_bytes: dict[str, int]
    wal_bytes: int
    wal_records: int

    @property
    def bytes_per_row(self) -> float:
        return (self.heap_bytes + sum(self.index_bytes.values())) / self.rows

    @property
    def wal_per_row(self) -> float:
        return self.wal_bytes / self.rows

    def index_per_row(self, name_contains: str) -> float:
        return sum(v for k, v in self.index_bytes.items() if name_contains in k) / self.rows


class WritePath(_Frozen, frozen=True):
    """The worker's store + reconcile transaction, run for real and rolled back."""

    batches: int
    observations: int
    versions: int
    audit_rows: int
    outbox_rows: int
    snap_rows: int
    wall_seconds: float
    worker_cpu_seconds: float
    db_cpu_seconds: float | None  # None when the database is not on this machine

    @property
    def worker_rows_per_cpu_second(self) -> float:
        return self.observations / self.worker_cpu_seconds

    @property
    def db_cpu_seconds_per_observation(self) -> float | None:
        if self.db_cpu_seconds is None:
            return None
        return self.db_cpu_seconds / self.observations


class QueryCost(_Frozen, frozen=True):
    """One read of the query store on a cache miss."""

    kind: str
    calls: int
    wall_ms: float
    db_cpu_ms: float | None
    rows: float


class Measurements(_Frozen, frozen=True):
    measured_at: str
    environment: dict[str, str]
    cache_entries: list[CacheEntrySize]
    tables: list[TableFootprint]
    write_path: WritePath
    queries: list[QueryCost]

    def cache_entry(self, kind: str) -> CacheEntrySize:
        return _one(self.cache_entries, kind, lambda e: e.kind)

    def table(self, name: str) -> TableFootprint:
        return _one(self.tables, name, lambda t: t.table)

    def query(self, kind: str) -> QueryCost:
        return _one(self.queries, kind, lambda q: q.kind)


_T = TypeVar("_T")


def _one(items: list[_T], name: str, key: Callable[[_T], str]) -> _T:
    for item in items:
        if key(item) == name:
            return item
    raise KeyError(f"no measurement named {name!r}")


# -- the workload model ---------------------------------------------------------------------


class ReadMix(_Frozen, frozen=True):
    """Share of the query rate per kind of read (sums to 1)."""

    latest: float = 0.50
    version: float = 0.10
    as_of: float = 0.10
    history: float = 0.20
    quality: float = 0.10


class Workload(_Frozen, frozen=True):
    """What the platform must carry. Every field is an assumption; see benchmarks/sizing."""

    series: int = 10_000
    sources_per_series: int = 5
    snap_interval_seconds: int = 300
    # All series snap at the same instants; the observations of one snap must be stored and
    # reconciled within this long (publication freshness), which sets the ingestion peak.
    drain_seconds: float = 30.0
    revision_share: float = 0.05  # snaps that get a version 2 (late or corrected source)
    suspect_share: float = 0.05  # versions below the quality threshold (alert events)
    query_rate_per_second: float = 2_000.0
    read_mix: ReadMix = msgspec.field(default_factory=ReadMix)
    zipf_s: float = 1.0
    hot_snaps_per_series: int = 288  # point reads target the last day of snaps
    as_of_times_per_snap: int = 4  # distinct as_of values clients use for one snap
    history_ranges_per_series: int = 20  # distinct (from, to, granularity) pages
    quality_windows_per_series: int = 3
    history_page_items: int = 100
    read_horizon_days: float = 30.0  # what readers keep touching (history, backtests)
    read_working_set_share: float = 0.90  # the hot set: series receiving this share of reads
    retention_observations_days: float = 30.0  # then archived to S3 and purged
    retention_official_values_days: float = 400.0
    retention_audit_days: float = 400.0
    outbox_retention_days: float = 1.0
    # Cache TTLs (seconds): the seed's (official 300, quality 600, compute 1800-3600)
    # and the service's L1 defaults (app.settings.CacheSettings).
    official_ttl: float = 300.0
    quality_ttl: float = 600.0
    immutable_ttl: float = 3600.0
    l1_mutable_ttl: float = 30.0
    l1_immutable_ttl: float = 600.0
    l1_max_entries: int = 100_000
    l1_max_bytes: int = 64 * 1024 * 1024

    @property
    def snaps_per_day(self) -> float:
        return SECONDS_PER_DAY / self.snap_interval_seconds

    @property
    def observations_per_day(self) -> float:
        return self.series * self.sources_per_series * self.snaps_per_day

    @property
    def versions_per_day(self) -> float:
        return self.series * self.snaps_per_day * (1 + self.revision_share)

    @property
    def peak_observations_per_second(self) -> float:
        return self.series * self.sources_per_series / self.drain_seconds

    def scaled(self, factor: float) -> Workload:
        """The business grown by `factor`: series and query rate together."""
        return msgspec.structs.replace(
            self,
            series=max(1, round(self.series * factor)),
            query_rate_per_second=self.query_rate_per_second * factor,
        )


class Deployment(_Frozen, frozen=True):
    """The seed's choices (qis-aws-deployment-architecture.md) and the service's pools."""

    cache_node_type: str = "cache.r6g.2xlarge"
    cache_nodes: int = 6  # NumCacheClusters: 1 primary + 5 replicas
    cache_shards: int = 1  # cluster mode disabled: every node holds the whole data set
    cache_reads_from_replicas: bool = False  # the service reads the primary endpoint
    aurora_writer: str = "db.r6g.2xlarge"
    aurora_readers: list[str] = msgspec.field(
        default_factory=lambda: ["db.r6g.xlarge", "db.r6g.xlarge"]
    )
    api_pods_min: int = 3
    api_pod_requests_per_second: float = 500.0  # HPA target per pod (assumption)
    worker_pods: int = 12  # = partitions of qis.observations.v1 (more would idle)
    scheduler_pods: int = 2  # leader + standby, both connected
    pool_max_size: int = 10  # QIS_DB__POOL_MAX_SIZE, per pool
    admin_connections: int = 5  # migrations, audit verify, humans


class InstanceType(_Frozen, frozen=True):
    vcpu: int
    memory_gib: float
    baseline_gbps: float


# Sources: ElastiCache supported node types (memory as listed for cache nodes), RDS/EC2
# instance specifications (vCPU, memory), EC2 network bandwidth baselines of the r6g family.
CATALOGUE: dict[str, InstanceType] = {
    "cache.r6g.large": InstanceType(vcpu=2, memory_gib=13.07, baseline_gbps=0.75),
    "cache.r6g.xlarge": InstanceType(vcpu=4, memory_gib=26.32, baseline_gbps=1.25),
    "cache.r6g.2xlarge": InstanceType(vcpu=8, memory_gib=52.82, baseline_gbps=2.5),
    "cache.r6g.4xlarge": InstanceType(vcpu=16, memory_gib=105.81, baseline_gbps=5.0),
    "db.r6g.large": InstanceType(vcpu=2, memory_gib=16, baseline_gbps=0.75),
    "db.r6g.xlarge": InstanceType(vcpu=4, memory_gib=32, baseline_gbps=1.25),
    "db.r6g.2xlarge": InstanceType(vcpu=8, memory_gib=64, baseline_gbps=2.5),
    "db.r6g.4xlarge": InstanceType(vcpu=16, memory_gib=128, baseline_gbps=5.0),
}


class Assumptions(_Frozen, frozen=True):
    """Platform facts (with sources) and the utilisation a check may reach to pass."""

    # ElastiCache default parameter groups reserve 25 % of memory (reserved-memory-percent)
    # for backups, failover and fragmentation; maxmemory is the rest.
    cache_reserved_memory_share: float = 0.25
    cache_memory_target: float = 0.80
    # Commands per second one Redis primary serves for small GET/SET/EVALSHA (assumption:
    # single-threaded command execution, order of 100k/s on Graviton2).
    cache_node_ops_per_second: float = 100_000.0
    cache_network_target: float = 0.50  # of the baseline bandwidth
    # Aurora PostgreSQL default max_connections = LEAST({DBInstanceClassMemory/9531392}, 5000)
    # (AWS docs, "Maximum connections to an Aurora PostgreSQL DB instance", memory in GB
    # as in its worked example); 3 are kept for AWS automation.
    aurora_connection_bytes: float = 9_531_392.0
    aurora_max_connections_cap: int = 5000
    aurora_reserved_connections: int = 3
    connection_target: float = 0.80
    reader_connection_imbalance: float = 1.5  # reader endpoint is DNS round robin
    # Aurora PostgreSQL default shared_buffers = SUM({DBInstanceClassMemory/12038}, -50003)
    # in 8 KiB pages: about 68 % of memory.
    buffer_cache_divisor: float = 12_038.0
    buffer_cache_offset_pages: int = 50_003
    buffer_cache_target: float = 0.80
    cpu_target: float = 0.70
    # A local core's work per unit vs a Graviton2 vCPU of the Aurora instance (assumption).
    aurora_cpu_factor: float = 1.0
    # Aurora writes only log records to storage: 6 copies over 3 AZs, and the log stream to
    # each reader; the writer's network carries them (Aurora design, SIGMOD 2017).
    aurora_storage_copies: int = 6
    aurora_network_target: float = 0.50
    # Aurora bills write I/Os in 4 KiB units of log (small concurrent writes batched) and
    # reads in 8 KiB pages (AWS Database Blog, "Planning I/O in Amazon Aurora").
    aurora_write_io_bytes: int = 4096
    aurora_io_price_per_million: float = 0.20  # Aurora Standard, us-east-1
    monthly_budget_usd: float = 5_000.0  # the seed's QIS-DataManagement-Monthly-Budget
    io_budget_share: float = 0.25  # above it, AWS suggests Aurora I/O-Optimized
    aurora_max_volume_bytes: float = 128 * 1024**4
    storage_target: float = 0.80


# -- results -------------------------------------------------------------------------------


class Check(_Frozen, frozen=True):
    name: str
    component: str
    question: str
    projected: float
    limit: float
    unit: str
    target: float  # the utilisation at which the check still passes
    passed: bool
    break_even_factor: float | None  # growth at which utilisation reaches 1; None: > range
    break_even: str
    detail: str

    @property
    def utilisation(self) -> float:
        return self.projected / self.limit if self.limit else math.inf


# -- the cache model ----------------------------------------------------------------------------


def _zipf_buckets(n: int, s: float) -> Iterator[tuple[float, float]]:
    """(count of series, probability of each) for ranks 1..n, exact for the first 1000
    ranks then in 1 % geometric buckets (sums by the midpoint integral of k**-s)."""

    def partial(a: float, b: float) -> float:  # sum of k**-s for k in [a, b]
        lo, hi = a - 0.5, b + 0.5
        if abs(s - 1.0) < 1e-12:
            return math.log(hi / lo)
        return float((hi ** (1 - s) - lo ** (1 - s)) / (1 - s))

    head = min(n, 1000)
    buckets: list[tuple[float, float]] = [(1.0, k ** (-s)) for k in range(1, head + 1)]
    start = head + 1
    while start <= n:
        end = min(n, max(start, math.floor(start * 1.01)))
        count = end - start + 1
        buckets.append((float(count), partial(start, end) / count))
        start = end + 1
    total = sum(c * w for c, w in buckets)
    for size, weight in buckets:
        yield size, weight / total


def zipf_head_fraction(n: int, s: float, share: float) -> float:
    """Fraction of the n series (most popular first) that receive `share` of the reads."""
    covered = series = 0.0
    for count, p in _zipf_buckets(n, s):
        if covered + count * p >= share:
            series += (share - covered) / p
            return min(1.0, series / n)
        covered += count * p
        series += count
    return 1.0


def _resident(x: float) -> float:
    return x / (1 + x)


class CacheClass(_Frozen, frozen=True):
    """One kind of cached read: rate, keys per series, L2/L1 TTLs, entry size."""

    kind: str
    rate: float
    keys_per_series: float
    l2_ttl: float
    l1_ttl: float
    entry_bytes: float


class CacheProjection(_Frozen, frozen=True):
    kind: str
    rate: float
    l2_entries: float
    l2_bytes: float
    l1_hit_ratio: float
    l2_requests_per_second: float
    db_loads_per_second: float
    l2_egress_bytes_per_second: float


def project_cache(
    workload: Workload, classes: list[CacheClass], pods: int
) -> list[CacheProjection]:
    """Per class: L2 residency and bytes, L1 hit ratio per pod, L2 traffic, database loads."""
    out: list[CacheProjection] = []
    buckets = list(_zipf_buckets(workload.series, workload.zipf_s))
    l1_entries = 0.0
    l1_bytes = 0.0
    partial: list[tuple[CacheClass, float, float, float]] = []
    for c in classes:
        entries = loads = l1_hits = l1_resident = 0.0
        for count, p in buckets:
            key_rate = c.rate * p / c.keys_per_series
            entries += count * c.keys_per_series * _resident(key_rate * c.l2_ttl)
            loads += count * c.keys_per_series * key_rate / (1 + key_rate * c.l2_ttl)
            pod_rate = key_rate / pods
            l1_hits += count * c.keys_per_series * key_rate * _resident(pod_rate * c.l1_ttl)
            l1_resident += count * c.keys_per_series * _resident(pod_rate * c.l1_ttl)
        l1_entries += l1_resident
        l1_bytes += l1_resident * c.entry_bytes
        partial.append((c, entries, loads, l1_hits / c.rate if c.rate else 0.0))
    # An L1 smaller than its working set keeps a proportional share of the hits (LRU).
    shrink = min(
        1.0,
        workload.l1_max_entries / l1_entries if l1_entries else 1.0,
        workload.l1_max_bytes / l1_bytes if l1_bytes else 1.0,
    )
    for c, entries, loads, l1_hit in partial:
        hit1 = l1_hit * shrink
        l2_requests = c.rate * (1 - hit1)
        l2_hits = max(0.0, l2_requests - loads)
        out.append(
            CacheProjection(
                kind=c.kind,
                rate=c.rate,
                l2_entries=entries,
                l2_bytes=entries * c.entry_bytes,
                l1_hit_ratio=hit1,
                l2_requests_per_second=l2_requests + loads,  # GETs plus the SETs of misses
                db_loads_per_second=loads,
                l2_egress_bytes_per_second=l2_hits * c.entry_bytes,
            )
        )
    return out


def cache_classes(workload: Workload, measurements: Measurements) -> list[CacheClass]:
    mix, rate = workload.read_mix, workload.query_rate_per_second
    official = measurements.cache_entry("official").bytes_per_entry
    return [
        CacheClass(
            kind="latest",
            rate=rate * mix.latest,
            keys_per_series=workload.hot_snaps_per_series,
            l2_ttl=workload.official_ttl,
            l1_ttl=workload.l1_mutable_ttl,
            entry_bytes=official,
        ),
        CacheClass(
            kind="version",
            rate=rate * mix.version,
            keys_per_series=workload.hot_snaps_per_series * (1 + workload.revision_share),
            l2_ttl=workload.immutable_ttl,
            l1_ttl=workload.l1_immutable_ttl,
            entry_bytes=official,
        ),
        CacheClass(
            kind="as_of",
            rate=rate * mix.as_of,
            keys_per_series=workload.hot_snaps_per_series * workload.as_of_times_per_snap,
            l2_ttl=workload.immutable_ttl,
            l1_ttl=workload.l1_immutable_ttl,
            entry_bytes=official,
        ),
        CacheClass(
            kind="history",
            rate=rate * mix.history,
            keys_per_series=workload.history_ranges_per_series,
            l2_ttl=workload.official_ttl,
            l1_ttl=workload.l1_mutable_ttl,
            entry_bytes=measurements.cache_entry("history_page").bytes_per_entry
            * workload.history_page_items
            / 100,
        ),
        CacheClass(
            kind="quality",
            rate=rate * mix.quality,
            keys_per_series=workload.quality_windows_per_series,
            l2_ttl=workload.quality_ttl,
            l1_ttl=workload.l1_mutable_ttl,
            entry_bytes=measurements.cache_entry("quality").bytes_per_entry,
        ),
    ]


# -- derived quantities ---------------------------------------------------------------------


def api_pods(workload: Workload, deployment: Deployment) -> int:
    needed = math.ceil(workload.query_rate_per_second / deployment.api_pod_requests_per_second)
    return max(deployment.api_pods_min, needed)


def max_connections(instance: InstanceType, assumptions: Assumptions) -> int:
    return min(
        round(instance.memory_gib * GB / assumptions.aurora_connection_bytes),
        assumptions.aurora_max_connections_cap,
    )


def buffer_cache_bytes(instance: InstanceType, assumptions: Assumptions) -> float:
    pages = (
        instance.memory_gib * GB / assumptions.buffer_cache_divisor
        - assumptions.buffer_cache_offset_pages
    )
    return max(0.0, pages * 8192)


def cache_memory_bytes(instance: InstanceType, assumptions: Assumptions) -> float:
    return instance.memory_gib * GIB * (1 - assumptions.cache_reserved_memory_share)


def journal_rows_per_version(workload: Workload, measurements: Measurements) -> tuple[float, float]:
    """Audit and outbox rows per official version: audit records are the worker's
    (measured: created, accepted, alerts) plus the relay's `event.published`; outbox rows
    are the domain events only (the relay mirrors audit records to the audit topic from
    the trail itself, not through the outbox)."""
    write_path = measurements.write_path
    domain_events = 1 + workload.suspect_share
    accepted = max(
        0.0, write_path.audit_rows / write_path.versions - 1 - _measured_suspect_share(measurements)
    )
    audit = accepted + domain_events + domain_events  # created+alerts, then event.published
    return audit, domain_events


def _measured_suspect_share(measurements: Measurements) -> float:
    write_path = measurements.write_path
    # outbox = domain events: a publication per version, plus an alert per suspect one
    return max(0.0, write_path.outbox_rows / write_path.versions - 1)


def wal_per_observation(workload: Workload, measurements: Measurements) -> float:
    """WAL bytes one observation causes on the writer, its share of its version included."""
    audit, outbox = journal_rows_per_version(workload, measurements)
    per_version = (
        measurements.table("official_values").wal_per_row
        + audit * measurements.table("audit_log").wal_per_row
        + outbox * measurements.table("outbox").wal_per_row
        + 2 * measurements.table("snaps").wal_per_row  # the snap's insert, then its state change
    )
    versions_per_observation = (1 + workload.revision_share) / workload.sources_per_series
    return measurements.table("observations").wal_per_row + versions_per_observation * per_version


# -- the checks ------------------------------------------------------------------------------


class Projected(NamedTuple):
    """One check at one workload: what it uses, what it may use, and how it got there."""

    projected: float
    limit: float
    detail: str


class Sizing:
    """What the checks read besides the workload: the deployment, the measured unit costs,
    the assumptions, the instance types the deployment names, and the cache projection of
    each workload (computed once: the break-even bisections ask for it repeatedly)."""

    def __init__(
        self, deployment: Deployment, measurements: Measurements, assumptions: Assumptions
    ) -> None:
        self.deployment = deployment
        self.measurements = measurements
        self.assumptions = assumptions
        self.cache_node = CATALOGUE[deployment.cache_node_type]
        self.writer = CATALOGUE[deployment.aurora_writer]
        self.readers = [CATALOGUE[reader] for reader in deployment.aurora_readers]
        self._cache_projections: dict[tuple[int, float], list[CacheProjection]] = {}

    def cache(self, workload: Workload) -> list[CacheProjection]:
        key = (workload.series, workload.query_rate_per_second)
        if key not in self._cache_projections:
            self._cache_projections[key] = project_cache(
                workload,
                cache_classes(workload, self.measurements),
                api_pods(workload, self.deployment),
            )
        return self._cache_projections[key]

    def serving_cache_nodes(self) -> int:
        """Nodes that serve commands: the primaries, plus replicas if reads go to them."""
        per_shard = self.deployment.cache_nodes // self.deployment.cache_shards
        nodes = per_shard if self.deployment.cache_reads_from_replicas else 1
        return nodes * self.deployment.cache_shards


def project_cache_memory(sizing: Sizing, workload: Workload) -> Projected:
    deployment, assumptions = sizing.deployment, sizing.assumptions
    projection = sizing.cache(workload)
    scopes = workload.series * sizing.measurements.cache_entry("scope").bytes_per_entry
    used = sum(p.l2_bytes for p in projection) + scopes
    capacity = cache_memory_bytes(sizing.cache_node, assumptions) * deployment.cache_shards
    parts = ", ".join(f"{p.kind} {p.l2_entries:,.0f}" for p in projection)
    return Projected(
        used,
        capacity,
        (
            f"resident L2 entries: {parts}; + {workload.series:,} scope keys. Capacity is "
            f"{deployment.cache_shards} shard(s) x {sizing.cache_node.memory_gib} GiB x "
            f"(1 - {assumptions.cache_reserved_memory_share:.0%} reserved): with cluster mode "
            f"disabled the {deployment.cache_nodes} nodes are replicas of one data set"
        ),
    )


def project_cache_ops(sizing: Sizing, workload: Workload) -> Projected:
    projection = sizing.cache(workload)
    ops = sum(p.l2_requests_per_second for p in projection)
    hits = ", ".join(f"{p.kind} {p.l1_hit_ratio:.0%}" for p in projection)
    return Projected(
        ops,
        sizing.assumptions.cache_node_ops_per_second * sizing.serving_cache_nodes(),
        (
            f"L1 hit ratio per pod ({api_pods(workload, sizing.deployment)} pods): {hits}. "
            f"{sizing.serving_cache_nodes()} node(s) serve commands (reads go to the primary "
            f"endpoint)"
        ),
    )


def project_cache_network(sizing: Sizing, workload: Workload) -> Projected:
    projection = sizing.cache(workload)
    egress = sum(p.l2_egress_bytes_per_second for p in projection)
    limit = sizing.cache_node.baseline_gbps * 1e9 / 8 * sizing.serving_cache_nodes()
    biggest = max(projection, key=lambda p: p.l2_egress_bytes_per_second)
    return Projected(
        egress,
        limit,
        (
            f"L2 hit bytes/s; {biggest.kind} entries are "
            f"{biggest.l2_egress_bytes_per_second / max(egress, 1):.0%} of it; limit: "
            f"{sizing.cache_node.baseline_gbps} Gbit/s baseline per serving node"
        ),
    )


def project_writer_connections(sizing: Sizing, workload: Workload) -> Projected:
    deployment, assumptions = sizing.deployment, sizing.assumptions
    pods = api_pods(workload, deployment)
    pool = deployment.pool_max_size
    api = pods * (pool + 1)  # writer pool + publication listener
    workers = deployment.worker_pods * pool
    schedulers = deployment.scheduler_pods * (pool + 1)  # + leader/notify connection
    total = api + workers + schedulers + deployment.admin_connections
    writer_max = max_connections(sizing.writer, assumptions)
    return Projected(
        total,
        writer_max - assumptions.aurora_reserved_connections,
        (
            f"{pods} api pods x ({pool} + 1 listener) + {deployment.worker_pods} workers x "
            f"{pool} + {deployment.scheduler_pods} schedulers x ({pool} + 1) + "
            f"{deployment.admin_connections} admin; max_connections "
            f"{writer_max} - {assumptions.aurora_reserved_connections} reserved"
        ),
    )


def project_reader_connections(sizing: Sizing, workload: Workload) -> Projected:
    deployment, assumptions, readers = sizing.deployment, sizing.assumptions, sizing.readers
    pods = api_pods(workload, deployment)
    per_reader = pods * deployment.pool_max_size / len(readers)
    worst = per_reader * assumptions.reader_connection_imbalance
    smallest = min(max_connections(reader, assumptions) for reader in readers)
    return Projected(
        worst,
        smallest - assumptions.aurora_reserved_connections,
        (
            f"{pods} api pods x {deployment.pool_max_size} over {len(readers)} readers, "
            f"x{assumptions.reader_connection_imbalance} for DNS round-robin imbalance"
        ),
    )


def writer_cpu_is_measured(sizing: Sizing) -> bool:
    return sizing.measurements.write_path.db_cpu_seconds_per_observation is not None


def project_writer_cpu(sizing: Sizing, workload: Workload) -> Projected:
    per_observation = sizing.measurements.write_path.db_cpu_seconds_per_observation
    if per_observation is None:
        raise ValueError("the writer CPU check needs db_cpu_seconds_per_observation")
    rate = workload.peak_observations_per_second
    used = rate * per_observation / sizing.assumptions.aurora_cpu_factor
    return Projected(
        used,
        float(sizing.writer.vcpu),
        (
            f"peak {rate:,.0f} observations/s (a snap of every series in "
            f"{workload.drain_seconds:.0f} s) x {per_observation * 1e6:.0f} us database CPU "
            f"each (store + reconcile + journal, measured)"
        ),
    )


PAGE_BYTES = 8192
"""A PostgreSQL page (heap and B-tree)."""

SERIES_LOCAL_INDEXES: tuple[tuple[str, str], ...] = (
    ("observations", "pkey"),  # (series, snap, observation id)
    ("official_values", "pkey"),  # (series, snap, version)
    ("official_values", "recorded_at"),  # (series, recorded_at)
    ("snaps", "pkey"),  # (series, snap)
    ("audit_log", "entity"),  # (entity type, "series/snap"...)
)
"""Indexes whose new entries land at the end of one series' key range (table, index name
part). The others on the write path are monotonic (`seq`, `id`, window close time) or
bounded by the outbox retention (`outbox.event_id`)."""


def project_writer_memory(sizing: Sizing, workload: Workload) -> Projected:
    measurements = sizing.measurements
    audit_rows, outbox_rows = journal_rows_per_version(workload, measurements)
    rows_per_day = {
        "observations": workload.observations_per_day,
        "official_values": workload.versions_per_day,
        "snaps": workload.versions_per_day,
        "audit_log": workload.versions_per_day * audit_rows,
        "outbox": workload.versions_per_day * outbox_rows,
    }
    recent = sum(
        rows / 24 * measurements.table(table).bytes_per_row for table, rows in rows_per_day.items()
    )  # the last hour of every table written, heap and indexes
    series_local = sum(
        1
        for table, part in SERIES_LOCAL_INDEXES
        for name in measurements.table(table).index_bytes
        if part in name
    )
    edges = workload.series * series_local * PAGE_BYTES * 2  # the leaf page and its split
    outbox_keys = (
        rows_per_day["outbox"]
        * workload.outbox_retention_days
        * measurements.table("outbox").index_per_row("event_id")
    )
    return Projected(
        recent + edges + outbox_keys,
        buffer_cache_bytes(sizing.writer, sizing.assumptions),
        (
            f"what inserts touch: the last hour of every table written (heap and indexes) "
            f"{recent / GB:,.2f} GB; the insert edge of {series_local} series-keyed indexes "
            f"({workload.series:,} series x 2 pages) {edges / GB:,.2f} GB; the outbox's "
            f"event-id index over its {workload.outbox_retention_days:g}-day retention "
            f"{outbox_keys / GB:,.2f} GB; vs the default shared_buffers. No index on the "
            f"write path has a random key over the whole history"
        ),
    )


def project_writer_network(sizing: Sizing, workload: Workload) -> Projected:
    per_observation = wal_per_observation(workload, sizing.measurements)
    wal = workload.peak_observations_per_second * per_observation
    copies = sizing.assumptions.aurora_storage_copies + len(sizing.readers)
    return Projected(
        wal * copies,
        sizing.writer.baseline_gbps * 1e9 / 8,
        (
            f"peak log {wal / 1e6:.1f} MB/s ({per_observation:,.0f} B WAL per "
            f"observation, measured) x {copies} (6 storage copies + {len(sizing.readers)} "
            f"readers)"
        ),
    )


def project_write_io_cost(sizing: Sizing, workload: Workload) -> Projected:
    assumptions = sizing.assumptions
    per_observation = wal_per_observation(workload, sizing.measurements)
    wal_per_second = workload.observations_per_day * per_observation / SECONDS_PER_DAY
    iops = wal_per_second / assumptions.aurora_write_io_bytes
    peak_iops = (
        workload.peak_observations_per_second * per_observation / assumptions.aurora_write_io_bytes
    )
    cost = iops * SECONDS_PER_MONTH / 1e6 * assumptions.aurora_io_price_per_million
    budget = assumptions.monthly_budget_usd * assumptions.io_budget_share
    return Projected(
        cost,
        budget,
        (
            f"average {iops:,.0f} write IOPS (4 KiB log units, perfectly batched: a lower "
            f"bound), peak {peak_iops:,.0f}"
            f"; ${cost:,.0f}/month at ${assumptions.aurora_io_price_per_million}/million vs "
            f"{assumptions.io_budget_share:.0%} of the seed's "
            f"${assumptions.monthly_budget_usd:,.0f} budget"
        ),
    )


def project_reader_cpu(sizing: Sizing, workload: Workload) -> Projected:
    used = 0.0
    parts = []
    for projection in sizing.cache(workload):
        query = sizing.measurements.query(projection.kind)
        cost = query.db_cpu_ms or query.wall_ms
        used += projection.db_loads_per_second * cost / 1000
        parts.append(f"{projection.kind} {projection.db_loads_per_second:,.0f}/s")
    return Projected(
        used / sizing.assumptions.aurora_cpu_factor,
        float(sum(reader.vcpu for reader in sizing.readers)),
        f"cache misses reaching PostgreSQL: {', '.join(parts)}, x measured CPU per query",
    )


def project_reader_memory(sizing: Sizing, workload: Workload) -> Projected:
    official_values = sizing.measurements.table("official_values")
    hot = zipf_head_fraction(workload.series, workload.zipf_s, workload.read_working_set_share)
    rows = workload.versions_per_day * workload.read_horizon_days * hot
    used = rows * official_values.bytes_per_row
    return Projected(
        used,
        min(buffer_cache_bytes(reader, sizing.assumptions) for reader in sizing.readers),
        (
            f"official values of the last {workload.read_horizon_days:g} days of the {hot:.0%} "
            f"most read series (they receive {workload.read_working_set_share:.0%} of reads "
            f"under Zipf s={workload.zipf_s:g}): {rows:,.0f} rows x "
            f"{official_values.bytes_per_row:.0f} B with indexes, vs one reader's shared_buffers"
        ),
    )


def project_worker_throughput(sizing: Sizing, workload: Workload) -> Projected:
    rate = workload.peak_observations_per_second
    per_pod = sizing.measurements.write_path.worker_rows_per_cpu_second
    worker_pods = sizing.deployment.worker_pods
    return Projected(
        rate / per_pod,
        float(worker_pods),
        (
            f"peak {rate:,.0f} observations/s / {per_pod:,.0f} per worker CPU-second "
            f"(measured; one asyncio process per pod) vs {worker_pods} worker pods "
            f"(= partitions: more would idle)"
        ),
    )


def project_storage(sizing: Sizing, workload: Workload) -> Projected:
    measurements = sizing.measurements
    audit_rows, _ = journal_rows_per_version(workload, measurements)
    parts = {
        "observations": workload.observations_per_day
        * workload.retention_observations_days
        * measurements.table("observations").bytes_per_row,
        "official values": workload.versions_per_day
        * workload.retention_official_values_days
        * measurements.table("official_values").bytes_per_row,
        "audit": workload.versions_per_day
        * audit_rows
        * workload.retention_audit_days
        * measurements.table("audit_log").bytes_per_row,
    }
    text = ", ".join(f"{name} {size / GB:,.0f} GB" for name, size in parts.items())
    return Projected(sum(parts.values()), sizing.assumptions.aurora_max_volume_bytes, text)


def always(_sizing: Sizing) -> bool:
    return True


def whole_budget(_assumptions: Assumptions) -> float:
    """The target of a check whose limit is already the share of the budget allowed."""
    return 1.0


class CheckSpec(NamedTuple):
    """One row of the table of checks."""

    name: str
    # Formatted with `deployment` and `reader_count`.
    component: str
    question: str
    unit: str
    # The utilisation at which the check still passes.
    target: Callable[[Assumptions], float]
    project: Callable[[Sizing, Workload], Projected]
    applies: Callable[[Sizing], bool] = always


CACHE = "ElastiCache {deployment.cache_node_type}"
WRITER = "Aurora writer {deployment.aurora_writer}"
READERS = "Aurora readers {reader_count} x {deployment.aurora_readers[0]}"

CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        "cache.memory",
        "ElastiCache {deployment.cache_nodes} x {deployment.cache_node_type}",
        "Does the L2 working set fit in maxmemory with headroom?",
        "bytes",
        attrgetter("cache_memory_target"),
        project_cache_memory,
    ),
    CheckSpec(
        "cache.ops",
        CACHE,
        "Can the node(s) serving reads take the L2 command rate?",
        "ops/s",
        attrgetter("cpu_target"),
        project_cache_ops,
    ),
    CheckSpec(
        "cache.network",
        CACHE,
        "Does L2 egress stay within the baseline network bandwidth?",
        "bytes/s",
        attrgetter("cache_network_target"),
        project_cache_network,
    ),
    CheckSpec(
        "aurora.connections.writer",
        WRITER,
        "Do pods x pool sizes stay under the writer's max_connections?",
        "connections",
        attrgetter("connection_target"),
        project_writer_connections,
    ),
    CheckSpec(
        "aurora.connections.reader",
        READERS,
        "Do the API reader pools stay under each reader's max_connections?",
        "connections",
        attrgetter("connection_target"),
        project_reader_connections,
    ),
    CheckSpec(
        "aurora.writer.cpu",
        WRITER,
        "Can the writer's vCPUs absorb the ingestion peak?",
        "vCPU",
        attrgetter("cpu_target"),
        project_writer_cpu,
        applies=writer_cpu_is_measured,
    ),
    CheckSpec(
        "aurora.writer.memory",
        WRITER,
        "Do the indexes every insert touches stay in the writer's buffer cache?",
        "bytes",
        attrgetter("buffer_cache_target"),
        project_writer_memory,
    ),
    CheckSpec(
        "aurora.writer.throughput",
        WRITER,
        "Does the log the writer ships stay within its network baseline?",
        "bytes/s",
        attrgetter("aurora_network_target"),
        project_writer_network,
    ),
    CheckSpec(
        "aurora.writer.iops",
        "Aurora storage (Standard)",
        "Do write I/Os stay a small part of the seed's monthly budget?",
        "USD/month",
        whole_budget,
        project_write_io_cost,
    ),
    CheckSpec(
        "aurora.readers.cpu",
        READERS,
        "Can the readers serve the cache misses?",
        "vCPU",
        attrgetter("cpu_target"),
        project_reader_cpu,
    ),
    CheckSpec(
        "aurora.readers.memory",
        "Aurora readers {deployment.aurora_readers[0]}",
        "Does the read working set stay in a reader's buffer cache?",
        "bytes",
        attrgetter("buffer_cache_target"),
        project_reader_memory,
    ),
    CheckSpec(
        "workers.throughput",
        "{deployment.worker_pods} worker pods",
        "Do the workers drain a snap's observations within the freshness budget?",
        "worker cores",
        attrgetter("cpu_target"),
        project_worker_throughput,
    ),
    CheckSpec(
        "aurora.storage",
        "Aurora cluster volume",
        "Does retained data fit the cluster volume?",
        "bytes",
        attrgetter("storage_target"),
        project_storage,
    ),
)

# Growth factors the break-even bisection searches between, and when it stops.
GROWTH_RANGE = (1e-3, 1e4)
GROWTH_PRECISION = 1.005
GROWTH_STEPS = 60


def runs_out(spec: CheckSpec, sizing: Sizing, workload: Workload, growth: float) -> bool:
    """Whether the check's resource is used up once the workload grows by `growth`."""
    projected, limit, _ = spec.project(sizing, workload.scaled(growth))
    return projected >= limit


def break_even_growth(spec: CheckSpec, sizing: Sizing, workload: Workload) -> float | None:
    """Smallest growth factor at which projected >= limit (bisection on a log scale)."""
    low, high = GROWTH_RANGE
    if runs_out(spec, sizing, workload, low):
        return low
    if not runs_out(spec, sizing, workload, high):
        return None
    for _ in range(GROWTH_STEPS):
        middle = math.sqrt(low * high)
        if runs_out(spec, sizing, workload, middle):
            high = middle
        else:
            low = middle
        if high / low < GROWTH_PRECISION:
            break
    return high


def describe_break_even(growth: float | None, workload: Workload, computed: bool) -> str:
    if not computed:
        return "not computed"
    if growth is None:
        return "not within x10,000 growth"
    return (
        f"x{growth:.2f} ({round(workload.series * growth):,} series, "
        f"{workload.query_rate_per_second * growth:,.0f} queries/s)"
    )


def run_check(spec: CheckSpec, sizing: Sizing, workload: Workload, with_break_even: bool) -> Check:
    """The check of `spec` at `workload`, with its break-even growth when asked."""
    projected, limit, detail = spec.project(sizing, workload)
    growth = break_even_growth(spec, sizing, workload) if with_break_even else None
    target = spec.target(sizing.assumptions)
    return Check(
        name=spec.name,
        component=spec.component.format(
            deployment=sizing.deployment, reader_count=len(sizing.readers)
        ),
        question=spec.question,
        projected=projected,
        limit=limit,
        unit=spec.unit,
        target=target,
        passed=projected <= target * limit,
        break_even_factor=growth,
        break_even=describe_break_even(growth, workload, with_break_even),
        detail=detail,
    )


def evaluate(
    workload: Workload,
    deployment: Deployment,
    measurements: Measurements,
    assumptions: Assumptions | None = None,
    *,
    break_even: bool = True,
) -> list[Check]:
    """Every check of the seed's sizing against the workload and the measurements
    (`break_even=False` skips the bisections: pass/fail only)."""
    sizing = Sizing(deployment, measurements, assumptions or Assumptions())
    return [
        run_check(spec, sizing, workload, with_break_even=break_even)
        for spec in CHECKS
        if spec.applies(sizing)
    ]
