"""Settings: one frozen struct tree decoded from `QIS_*` environment variables.

Nesting uses a double underscore: `QIS_DB__WRITER_DSN` sets `settings.db.writer_dsn`.
Nothing here runs at import time; `load_settings()` is called by the CLI or a test.
An unknown `QIS_*` variable is an error that names the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

PREFIX = "QIS_"


class SettingsError(ValueError):
    """A `QIS_*` variable is unknown or has a bad value."""


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class DbSettings(_Section, frozen=True):
    writer_dsn: str = "postgresql://qis:qis@127.0.0.1:55432/qis"
    # The Aurora reader endpoint in production; locally the same server.
    reader_dsn: str = "postgresql://qis:qis@127.0.0.1:55432/qis"
    pool_min_size: int = 1
    pool_max_size: int = 10
    command_timeout_seconds: float = 10.0


class KafkaSettings(_Section, frozen=True):
    bootstrap_servers: str = "127.0.0.1:59092"
    client_id: str = "qis"
    observations_topic: str = "qis.observations.v1"
    observations_partitions: int = 12
    dlq_topic: str = "qis.observations.dlq.v1"
    official_values_topic: str = "qis.official-values.v1"
    quality_alerts_topic: str = "qis.quality-alerts.v1"
    audit_topic: str = "qis.audit.v1"
    events_partitions: int = 6
    compression: Literal["lz4", "gzip", "none"] = "lz4"
    linger_ms: int = 2
    max_batch_bytes: int = 1_048_576
    # Upper bound for one request's records to be acknowledged by the broker.
    ack_timeout_seconds: float = 5.0
    request_timeout_ms: int = 10_000


class RedisSettings(_Section, frozen=True):
    url: str = "redis://127.0.0.1:56379/0"
    socket_timeout_seconds: float = 0.25


class CacheSettings(_Section, frozen=True):
    """Query cache: L1 in-process, L2 Redis (docs/cache.md explains every value)."""

    l1_max_entries: int = 100_000
    l1_max_bytes: int = 64 * 1024 * 1024
    # Entries a publication changes (latest, history without a settled as_of, quality) are
    # dropped by the publication listener within milliseconds, and L1 is cleared when the
    # listener loses its connection: the TTL is the seed's 300 s for official data.
    l1_mutable_ttl_seconds: float = 300.0
    l1_immutable_ttl_seconds: float = 600.0
    # L2 TTLs from the seed: official data 300 s, quality 600 s, compute results 1800-3600 s.
    official_ttl_seconds: int = 300
    quality_ttl_seconds: int = 600
    immutable_ttl_seconds: int = 3600
    absent_ttl_seconds: int = 60
    # An as_of this far in the past is settled: no transaction still open can record a
    # version at or before it, so what it reads is immutable.
    settle_seconds: float = 60.0
    # Loads started this soon after a publication of their series are served, not cached:
    # an Aurora reader may lag the writer that announced the publication.
    replica_lag_guard_seconds: float = 1.0
    # How long "latest must be at least version N" is remembered after a publication.
    floor_seconds: float = 30.0
    # After a Redis error, reads skip Redis (straight to PostgreSQL) for this long.
    redis_retry_seconds: float = 1.0
    # The publication listener's connection is checked this often; a gap clears L1.
    listener_check_seconds: float = 1.0


class ApiSettings(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8000
    # Requests being produced at once; above it ingestion answers 503 instead of queueing.
    max_in_flight_requests: int = 256
    max_body_bytes: int = 2 * 1024 * 1024
    retry_after_seconds: int = 1
    shutdown_grace_seconds: float = 10.0


class WorkerSettings(_Section, frozen=True):
    group_id: str = "qis-worker"
    max_batch_records: int = 5000
    poll_timeout_ms: int = 200
    # Transactions a polled batch is split into, by partition, run concurrently: one
    # lane's Python work overlaps another's database round trips. Each lane commits its
    # partitions' observations, effects and offsets together, so exactly-once holds per
    # partition. At most pool_max_size - 1 (one connection stays for position restores).
    lanes: int = 1
    # Transient failures (connection lost, serialization failure, lock or statement
    # timeout, broker unavailable): a batch is retried in place `retry_attempts` times,
    # waiting from `retry_initial_seconds` doubling up to `retry_max_seconds`; then the
    # worker rewinds to its stored positions and keeps retrying at the longest wait.
    retry_attempts: int = 3
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0


class SchedulerSettings(_Section, frozen=True):
    # Window closing and the relay's fallback poll; the relay also wakes on every commit.
    interval_seconds: float = 1.0
    relay_batch_size: int = 500
    # Open snaps reconciled per round when windows close.
    window_batch_size: int = 1000
    # Published outbox rows are kept this long (for inspection), then purged.
    outbox_retention_seconds: float = 86_400.0
    purge_interval_seconds: float = 300.0


class TelemetrySettings(_Section, frozen=True):
    # False: no tracing, no metrics, no trace header (the baseline of the cost benchmark).
    enabled: bool = True
    service_name: str = "qis"
    environment: str = "local"
    # none | otlp (ADOT collector) | file (JSON lines) | memory (tests)
    traces_exporter: Literal["none", "otlp", "file", "memory"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    traces_file: str = ".local/telemetry/traces.jsonl"
    sample_rate_ingestion: float = 0.10
    sample_rate_query: float = 0.05
    sample_rate_health: float = 0.0
    sample_rate_default: float = 0.05
    # none | stdout | file: CloudWatch Embedded Metric Format
    metrics_exporter: Literal["none", "stdout", "file"] = "none"
    metrics_file: str = ".local/telemetry/metrics.emf.jsonl"
    metrics_interval_seconds: float = 60.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(_Section, frozen=True):
    db: DbSettings = DbSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    cache: CacheSettings = CacheSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    telemetry: TelemetrySettings = TelemetrySettings()


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Decode `QIS_SECTION__FIELD` variables into `Settings`; unknown names fail loudly."""
    tree: dict[str, dict[str, Any]] = {}
    sections = {f.name: f.type for f in msgspec.structs.fields(Settings)}
    for name, raw in environ.items():
        if not name.startswith(PREFIX):
            continue
        section, sep, field = name[len(PREFIX) :].lower().partition("__")
        section_type = sections.get(section)
        if not sep or section_type is None:
            raise SettingsError(f"unknown setting {name}: expected QIS_<SECTION>__<FIELD>")
        known = {f.name for f in msgspec.structs.fields(section_type)}
        if field not in known:
            raise SettingsError(f"unknown setting {name}: {section} has {sorted(known)}")
        tree.setdefault(section, {})[field] = raw
    try:
        settings = msgspec.convert(tree, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"bad setting value: {exc}") from exc
    if not 1 <= settings.worker.lanes < settings.db.pool_max_size:
        raise SettingsError(
            f"QIS_WORKER__LANES={settings.worker.lanes} must be at least 1 and below "
            f"QIS_DB__POOL_MAX_SIZE={settings.db.pool_max_size}"
        )
    return settings
