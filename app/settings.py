"""Settings: one frozen struct tree decoded from `QIS_*` environment variables.

Nesting uses a double underscore: `QIS_DB__WRITER_DSN` sets `settings.db.writer_dsn`.
Nothing here runs at import time; `load_settings()` is called by the CLI or a test.
An unknown `QIS_*` variable is an error that names the variable. Settings that hold a
secret (passwords, the password in a DSN or URL) never appear in `repr()` or `redacted()`.
TLS, SASL and IAM settings: docs/secure-connections.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

PREFIX = "QIS_"
# Timestream's database and table names.
_TIMESTREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{3,256}")
REDACTED = "***"
# Upper bound of QIS_API__PROCESSES: far above any pod's cores, low enough that a typo
# (a port number, say) does not start thousands of processes and pools.
MAX_API_PROCESSES = 64


class SettingsError(ValueError):
    """A `QIS_*` variable is unknown or has a bad value."""


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in redacted(self).items())
        return f"{type(self).__name__}({fields})"


class DbSettings(_Section, frozen=True):
    writer_dsn: str = "postgresql://qis:qis@127.0.0.1:55432/qis"
    # The Aurora reader endpoint in production; locally the same server.
    reader_dsn: str = "postgresql://qis:qis@127.0.0.1:55432/qis"
    pool_min_size: int = 1
    pool_max_size: int = 10
    command_timeout_seconds: float = 10.0
    # Bound on opening one connection (TCP, TLS, login); a server that does not answer
    # ends `qis` commands with one line after this long.
    connect_timeout_seconds: float = 10.0
    # "" leaves TLS to the DSN (`?sslmode=`; asyncpg's default is prefer). verify-full
    # checks the server certificate against ssl_root_cert and the host name.
    ssl_mode: Literal["", "disable", "prefer", "require", "verify-ca", "verify-full"] = ""
    # CA bundle (PEM) for verify-ca/verify-full; Aurora: the RDS global-bundle.pem.
    # Empty: the system trust store.
    ssl_root_cert: str = ""
    # Where the password comes from: the DSN ("password"), the Secrets Manager secret
    # password_secret_id ("secrets_manager": JSON with "password", and "username" used
    # when the DSN names no user; Aurora's managed master secret), or a fresh RDS IAM
    # token per connection ("iam"; needs TLS and the DSN's user granted rds_iam).
    auth: Literal["password", "secrets_manager", "iam"] = "password"
    password_secret_id: str = ""
    # Region of the secret and of the IAM token; empty: the SDK's (AWS_REGION).
    aws_region: str = ""
    # A secret is read again when older than this (rotation); tokens (valid 900 s) are
    # remade when older than iam_token_refresh_seconds.
    secret_refresh_seconds: float = 60.0
    iam_token_refresh_seconds: float = 600.0


class KafkaSettings(_Section, frozen=True):
    bootstrap_servers: str = "127.0.0.1:59092"
    client_id: str = "qis"
    observations_topic: str = "qis.observations.v1"
    observations_partitions: int = 12
    # Replicas of each topic `qis kafka topics` creates: 1 on the local single broker, 3
    # on MSK (whose min.insync.replicas is 2, so acks=all needs at least 2 replicas).
    replication_factor: int = 1
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
    # PLAINTEXT locally. MSK: SASL_SSL with AWS_MSK_IAM (port 9098; SASL/OAUTHBEARER
    # tokens signed with the pod's IAM role) or SCRAM-SHA-512 (port 9096), or SSL (9094).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["", "SCRAM-SHA-512", "AWS_MSK_IAM"] = ""
    # SCRAM credentials: username/password, or a Secrets Manager secret holding
    # {"username", "password"} (MSK's AmazonMSK_* secrets have that form).
    sasl_username: str = ""
    sasl_password: str = ""
    sasl_secret_id: str = ""
    # CA bundle (PEM) the brokers' certificates are checked against; empty: the system
    # trust store (MSK's certificates chain to Amazon's public roots).
    ssl_ca_file: str = ""
    # Region for the MSK IAM token and the secret; empty: the SDK's (AWS_REGION).
    aws_region: str = ""


class RedisSettings(_Section, frozen=True):
    # rediss:// for TLS (ElastiCache in-transit encryption), checked against ssl_ca_file
    # (empty: the system trust store) and the host name.
    url: str = "redis://127.0.0.1:56379/0"
    socket_timeout_seconds: float = 0.25
    ssl_ca_file: str = ""
    # AUTH: username (RBAC user; empty: the default user) and password (the AUTH token),
    # or a Secrets Manager secret holding the token (plain, or JSON with "password").
    username: str = ""
    password: str = ""
    password_secret_id: str = ""
    aws_region: str = ""
    secret_refresh_seconds: float = 60.0


class CacheSettings(_Section, frozen=True):
    """Query cache: L1 in-process, L2 Redis (docs/cache.md explains every value)."""

    l1_max_entries: int = 100_000
    l1_max_bytes: int = 64 * 1024 * 1024
    # Entries a publication changes (latest, history without a settled as_of, quality) are
    # dropped by the publication listener within milliseconds, and L1 is cleared when the
    # listener loses its connection: the TTL is official data's 300 s, as in L2.
    l1_mutable_ttl_seconds: float = 300.0
    l1_immutable_ttl_seconds: float = 600.0
    # L2 TTLs of the reference AWS architecture (docs/architecture.md): official data
    # 300 s, quality 600 s, compute results 1800-3600 s.
    official_ttl_seconds: int = 300
    quality_ttl_seconds: int = 600
    immutable_ttl_seconds: int = 3600
    absent_ttl_seconds: int = 60
    # Series descriptors (docs/descriptors.md): a PUT starts a new L2 generation of the
    # series' descriptor before it answers; other api processes keep their L1 copy up to
    # descriptor_l1_ttl_seconds.
    descriptor_ttl_seconds: int = 300
    descriptor_l1_ttl_seconds: float = 5.0
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
    # Request bodies above this are refused with 413 (5,000 observations fit in ~1.5 MiB).
    max_body_bytes: int = 2 * 1024 * 1024
    retry_after_seconds: int = 1
    shutdown_grace_seconds: float = 10.0
    # Processes serving the api from one listening socket (uvicorn's supervisor), each
    # with its own event loop, pools, L1 cache and publication listener: one per core
    # the pod is given (docs/operations.md#scaling).
    processes: int = 1


class WorkerSettings(_Section, frozen=True):
    group_id: str = "qis-worker"
    max_batch_records: int = 5000
    # A polled batch is stored in transactions of at most this many observations (a
    # record carries a whole request's observations for its partition).
    max_transaction_observations: int = 5000
    poll_timeout_ms: int = 200
    # Transactions a polled batch is split into, by partition, run concurrently: one
    # lane's Python work overlaps another's database round trips. Each lane commits its
    # partitions' observations, effects and offsets together, so exactly-once holds per
    # partition. At most pool_max_size - 1 (one connection stays for position restores).
    # Two by default: the worker's Python and its database round trips take about equal
    # time, so a second lane keeps both busy (benchmarks/results/ingestion.md).
    lanes: int = 2
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
    # Each enabled sink (EventBridge, Timestream) looks for new events this often.
    sink_interval_seconds: float = 1.0


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


class ClientSettings(_Section, frozen=True):
    """How the client commands (`qis ingest`) reach the api."""

    # Base URL of the api.
    url: str = "http://127.0.0.1:8000"
    # A bearer token sent as it is, or a command printing one (re-run when the api
    # answers 401); at most one of them.
    token: str = ""
    token_command: str = ""


class AuthSettings(_Section, frozen=True):
    """Bearer-token authentication of the `/v1` routes (docs/api.md, "Authentication")."""

    # False: every /v1 route is open and the audit actor is "anonymous"; only for
    # measuring something else. The api logs a warning at start when it is off.
    enabled: bool = True
    # The token issuer, exactly as in the tokens' `iss` claim: Cognito's
    # https://cognito-idp.<region>.amazonaws.com/<user pool id>; locally `qis dev issuer`.
    issuer: str = "http://127.0.0.1:58080"
    # Where the signing keys are; empty: <issuer>/.well-known/jwks.json (Cognito's).
    jwks_url: str = ""
    # App client ids whose tokens are accepted, comma-separated; empty: every client of
    # the issuer.
    client_ids: str = ""
    # Clock skew tolerated on exp, nbf and iat.
    leeway_seconds: float = 5.0
    # A token naming an unknown key id fetches the keys again, at most once this often.
    jwks_refresh_seconds: float = 60.0
    jwks_timeout_seconds: float = 3.0

    @property
    def jwks_location(self) -> str:
        return self.jwks_url or f"{self.issuer.rstrip('/')}/.well-known/jwks.json"

    @property
    def allowed_clients(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.client_ids.split(",") if c.strip())


class RateLimitSettings(_Section, frozen=True):
    """Token buckets per client id and scope, shared through Redis (docs/api.md)."""

    enabled: bool = True
    # Requests per second each client may make with each scope, and the burst above it.
    ingest_per_second: float = 100.0
    ingest_burst: int = 200
    read_per_second: float = 2000.0
    read_burst: int = 4000
    admin_per_second: float = 10.0
    admin_burst: int = 20
    # After a Redis error, each process limits on its own (same rates) for this long.
    redis_retry_seconds: float = 1.0


class LakeSettings(_Section, frozen=True):
    """The S3 data lake and the backup bucket (docs/lake.md). Locally the stack's moto
    server; in AWS `endpoint_url` is empty (the SDK's default endpoint) and the buckets
    are the deployment's."""

    enabled: bool = True
    # Empty: the AWS default endpoint for the region. Locally the stack's S3 (moto server).
    endpoint_url: str = "http://127.0.0.1:59000"
    region: str = "us-east-1"
    bucket: str = "qis-local-data-lake"
    backup_bucket: str = "qis-local-backups"
    # Static credentials for the local endpoint only; empty in AWS (the pod's IAM role).
    access_key_id: str = ""
    secret_access_key: str = ""
    # The archive (the scheduler's leader): how often it looks for closed hours, and how
    # many hours one round writes at most (a backlog is worked off round by round).
    archive_interval_seconds: float = 60.0
    archive_max_hours_per_round: int = 24
    # An hour is closed this long after the longest reconciliation window of any series
    # has passed its end: time for late observations.
    archive_late_grace_seconds: float = 600.0
    # Archived hours re-checked each round for late corrections (a new generation), back
    # from the newest archived hour.
    archive_recheck_hours: int = 24
    # Rows per Parquet row group (benchmarks/results/lake.md).
    row_group_rows: int = 16_384


class EventBridgeSettings(_Section, frozen=True):
    """Amazon EventBridge: the official-value and quality-alert events also go to an event
    bus (docs/events.md). Locally the stack's moto server (`qis events setup` creates the
    bus, its rules and their SQS queues); in AWS `endpoint_url` is empty and the bus is the
    events stack's (infra/cloudformation/events.yaml)."""

    enabled: bool = False
    bus_name: str = "qis-local-events"
    # The events' Source: what every rule of the bus matches first.
    source: str = "qis.reference-data"
    # Empty: the AWS default endpoint for the region. Locally the stack's moto server.
    endpoint_url: str = "http://127.0.0.1:59000"
    # Empty: the SDK's region (AWS_REGION; EKS sets it in every pod).
    region: str = "us-east-1"
    # Static credentials for the local endpoint only; empty in AWS (the pod's IAM role).
    access_key_id: str = ""
    secret_access_key: str = ""
    # Events the sink relay hands over at once (PutEvents calls carry at most 10 each).
    batch_size: int = 100
    # PutEvents attempts of one whole call (connection errors, throttling, 5xx), by the
    # SDK's standard retry mode; then the batch is handed over again later.
    call_attempts: int = 3
    # Attempts of the entries PutEvents reports as failed (InternalFailure, throttling),
    # waiting from retry_initial_seconds doubling up to retry_max_seconds (with jitter).
    entry_attempts: int = 4
    retry_initial_seconds: float = 0.2
    retry_max_seconds: float = 5.0
    # PutEvents' limit on the entries of one call (an entry larger than it is refused).
    max_request_bytes: int = 262_144
    # PutEvents calls made at once; calls made together never share a series, and each
    # group ends (retries included) before the next starts, so order per series holds.
    concurrent_calls: int = 5
    # The quality-alert rule also routes official values scored below this
    # (`qis events setup`; the events stack's LowQualityScore).
    low_quality_score: float = 0.8


class BackupSettings(_Section, frozen=True):
    """`qis backup` and `qis restore-drill` (docs/backup.md); the bucket is
    QIS_LAKE__BACKUP_BUCKET."""

    # Directory of pg_dump, pg_restore, initdb, pg_ctl (their major version must be at
    # least the server's). Empty: the newest /usr/lib/postgresql/<major>/bin, else PATH.
    pg_bin: str = ""
    # Parallel jobs of pg_restore in the drill.
    restore_jobs: int = 2
    # Bound on a whole backup or drill; every subprocess gets what is left of it.
    timeout_seconds: float = 3600.0


class RetentionSettings(_Section, frozen=True):
    """Day partitions of observations and audit records, and how long PostgreSQL keeps
    them (docs/lake.md, "Retention")."""

    # Days of observations and audit records kept in PostgreSQL; older day partitions are
    # dropped once the lake holds every hour of them, verified. 0: keep everything.
    db_days: int = 0
    # Day partitions created ahead of today (by `qis db migrate` and the scheduler).
    partitions_ahead_days: int = 7
    # How often the scheduler's leader creates partitions ahead and applies retention.
    interval_seconds: float = 3600.0
    # The wait for the lock of a DETACH (writers queue behind it), and how many tries.
    lock_timeout_seconds: float = 2.0
    lock_attempts: int = 3


class TimestreamSettings(_Section, frozen=True):
    """The Amazon Timestream copy of official values and quality metrics
    (docs/timeseries.md). Locally the stack's moto server; in AWS `endpoint_url` is empty
    (the SDK's default endpoint, found by endpoint discovery) and the names are the
    deployment's (infra/cloudformation/data.yaml)."""

    # Off by default: nothing is written to Timestream and nothing else changes.
    enabled: bool = False
    # Empty: the AWS default endpoint for the region (with endpoint discovery). Locally the
    # stack's moto server, which serves timestream-write and S3 on one port.
    endpoint_url: str = "http://127.0.0.1:59000"
    region: str = "us-east-1"
    # Static credentials for the local endpoint only; empty in AWS (the pod's IAM role).
    access_key_id: str = ""
    secret_access_key: str = ""
    database: str = "qis-local-timeseries"
    official_values_table: str = "officialDataValues"
    quality_metrics_table: str = "qualityMetrics"
    # Events handed to one delivery; each table gets WriteRecords of at most 100 records.
    batch_size: int = 100
    # WriteRecords attempts on throttling, internal or connection errors, with exponential
    # backoff from `retry_base_seconds` up to `retry_max_seconds` between them.
    max_attempts: int = 5
    retry_base_seconds: float = 0.2
    retry_max_seconds: float = 5.0
    # Where records Timestream rejects for what they are go, as JSON objects.
    rejected_bucket: str = "qis-local-timestream-rejected"
    rejected_prefix: str = "rejected-records/"
    # Retention `qis timestream setup` gives the tables it creates (the architecture's).
    official_values_memory_hours: int = 168
    official_values_magnetic_days: int = 2555
    quality_metrics_memory_hours: int = 24
    quality_metrics_magnetic_days: int = 365


class DocumentSettings(_Section, frozen=True):
    """The series descriptor documents in Amazon DocumentDB (docs/descriptors.md); locally
    FerretDB (`stack.sh up docdb`). Disabled: the descriptor routes answer 404 and
    nothing else changes."""

    enabled: bool = False
    # A MongoDB connection string; DocumentDB: mongodb://USER:PASSWORD@CLUSTER:27017/?tls=true
    # (retryWrites is always off: DocumentDB does not support retryable writes).
    url: str = "mongodb://127.0.0.1:57017/"
    database: str = "qis"
    collection: str = "descriptors"
    # CA bundle (PEM) the server certificate is checked against, with the host name; set,
    # it turns TLS on. DocumentDB: the RDS global-bundle.pem.
    tls_ca_file: str = ""
    # Bounds on opening a connection, on finding a usable server, and on one operation.
    connect_timeout_seconds: float = 5.0
    server_selection_timeout_seconds: float = 5.0
    operation_timeout_seconds: float = 5.0
    # Connections per api process.
    max_pool_size: int = 10


class Settings(_Section, frozen=True):
    db: DbSettings = DbSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    cache: CacheSettings = CacheSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    client: ClientSettings = ClientSettings()
    auth: AuthSettings = AuthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    lake: LakeSettings = LakeSettings()
    eventbridge: EventBridgeSettings = EventBridgeSettings()
    backup: BackupSettings = BackupSettings()
    documents: DocumentSettings = DocumentSettings()

    retention: RetentionSettings = RetentionSettings()

    timestream: TimestreamSettings = TimestreamSettings()


_SECRET_FIELDS = frozenset({"password", "sasl_password", "token", "secret_access_key"})
_URL_FIELDS = frozenset({"writer_dsn", "reader_dsn", "url"})


def redact_url(url: str) -> str:
    """`url` with the password of its user info replaced by `***`."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return REDACTED
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def redacted(section: msgspec.Struct) -> dict[str, Any]:
    """The settings as builtins, with every secret replaced by `***` (safe to log)."""
    out: dict[str, Any] = {}
    for name in section.__struct_fields__:
        value = getattr(section, name)
        if isinstance(value, msgspec.Struct):
            out[name] = redacted(value)
        elif name in _SECRET_FIELDS and value:
            out[name] = REDACTED
        elif name in _URL_FIELDS and isinstance(value, str):
            out[name] = redact_url(value)
        else:
            out[name] = value
    return out


def _security_problems(settings: Settings) -> list[str]:
    """Combinations of the TLS/SASL/IAM settings that cannot work, in words."""
    problems: list[str] = []
    kafka, db, cache = settings.kafka, settings.db, settings.redis
    if kafka.security_protocol == "SASL_SSL" and not kafka.sasl_mechanism:
        problems.append("QIS_KAFKA__SECURITY_PROTOCOL=SASL_SSL needs QIS_KAFKA__SASL_MECHANISM")
    if kafka.sasl_mechanism and kafka.security_protocol != "SASL_SSL":
        problems.append("QIS_KAFKA__SASL_MECHANISM needs QIS_KAFKA__SECURITY_PROTOCOL=SASL_SSL")
    if kafka.sasl_mechanism == "SCRAM-SHA-512" and not (
        kafka.sasl_secret_id or (kafka.sasl_username and kafka.sasl_password)
    ):
        problems.append(
            "SCRAM-SHA-512 needs QIS_KAFKA__SASL_USERNAME and QIS_KAFKA__SASL_PASSWORD, "
            "or QIS_KAFKA__SASL_SECRET_ID"
        )
    if db.auth == "secrets_manager" and not db.password_secret_id:
        problems.append("QIS_DB__AUTH=secrets_manager needs QIS_DB__PASSWORD_SECRET_ID")
    if db.auth == "iam" and db.ssl_mode not in ("require", "verify-ca", "verify-full"):
        problems.append("QIS_DB__AUTH=iam needs QIS_DB__SSL_MODE=verify-full (RDS: IAM over TLS)")
    if not 0 < db.iam_token_refresh_seconds < 900:
        problems.append("QIS_DB__IAM_TOKEN_REFRESH_SECONDS must be below 900 (a token's life)")
    if db.ssl_root_cert and db.ssl_mode not in ("verify-ca", "verify-full"):
        problems.append("QIS_DB__SSL_ROOT_CERT is used with QIS_DB__SSL_MODE=verify-full/verify-ca")
    if cache.ssl_ca_file and not cache.url.startswith("rediss://"):
        problems.append("QIS_REDIS__SSL_CA_FILE needs a rediss:// QIS_REDIS__URL")
    if settings.client.token and settings.client.token_command:
        problems.append("QIS_CLIENT__TOKEN and QIS_CLIENT__TOKEN_COMMAND exclude each other")
    limits = settings.rate_limit
    rates = (limits.ingest_per_second, limits.read_per_second, limits.admin_per_second)
    if min(rates) <= 0 or min(limits.ingest_burst, limits.read_burst, limits.admin_burst) < 1:
        problems.append("QIS_RATE_LIMIT__*_PER_SECOND must be above 0 and *_BURST at least 1")
    if settings.backup.restore_jobs < 1 or settings.backup.timeout_seconds <= 0:
        problems.append("QIS_BACKUP__RESTORE_JOBS must be at least 1, *_TIMEOUT_SECONDS above 0")
    series = settings.timestream
    if series.batch_size < 1 or not 1 <= series.max_attempts <= 20:
        problems.append(
            "QIS_TIMESTREAM__BATCH_SIZE must be at least 1, QIS_TIMESTREAM__MAX_ATTEMPTS 1 to 20"
        )
    names = (series.database, series.official_values_table, series.quality_metrics_table)
    if not all(_TIMESTREAM_NAME.fullmatch(name) for name in names):
        problems.append(
            "QIS_TIMESTREAM__DATABASE and the *_TABLE names must be 3 to 256 of A-Z a-z 0-9 _ . -"
        )
    if not 0 <= series.retry_base_seconds <= series.retry_max_seconds:
        problems.append(
            "QIS_TIMESTREAM__RETRY_BASE_SECONDS must be at least 0 and at most *_RETRY_MAX_SECONDS"
        )
    bus = settings.eventbridge
    if min(bus.batch_size, bus.call_attempts, bus.entry_attempts, bus.concurrent_calls) < 1:
        problems.append(
            "QIS_EVENTBRIDGE__BATCH_SIZE, *_ATTEMPTS and *_CONCURRENT_CALLS must be at least 1"
        )
    if not 0 <= bus.retry_initial_seconds <= bus.retry_max_seconds:
        problems.append("QIS_EVENTBRIDGE__RETRY_INITIAL_SECONDS must be 0..*_RETRY_MAX_SECONDS")
    documents = settings.documents
    if (
        min(
            documents.connect_timeout_seconds,
            documents.server_selection_timeout_seconds,
            documents.operation_timeout_seconds,
        )
        <= 0
        or documents.max_pool_size < 1
    ):
        problems.append(
            "QIS_DOCUMENTS__*_TIMEOUT_SECONDS must be above 0, MAX_POOL_SIZE at least 1"
        )
    if cache.password and cache.password_secret_id:
        problems.append("QIS_REDIS__PASSWORD and QIS_REDIS__PASSWORD_SECRET_ID exclude each other")
    return problems


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
    for name, value in (
        ("MAX_BATCH_RECORDS", settings.worker.max_batch_records),
        ("MAX_TRANSACTION_OBSERVATIONS", settings.worker.max_transaction_observations),
    ):
        if not 1 <= value <= 100_000:
            raise SettingsError(f"QIS_WORKER__{name}={value} must be between 1 and 100000")
    if not 1 <= settings.worker.lanes < settings.db.pool_max_size:
        raise SettingsError(
            f"QIS_WORKER__LANES={settings.worker.lanes} must be at least 1 and below "
            f"QIS_DB__POOL_MAX_SIZE={settings.db.pool_max_size}"
        )
    problems = _security_problems(settings)
    if not 1 <= settings.api.processes <= MAX_API_PROCESSES:
        problems.append(
            f"QIS_API__PROCESSES={settings.api.processes} must be 1 to {MAX_API_PROCESSES} "
            "(one per core)"
        )
    if problems:
        raise SettingsError("; ".join(problems))
    return settings
