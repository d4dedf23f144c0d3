"""`qis scheduler`: the scheduling service over PostgreSQL and Kafka."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer

from app.adapters.eventbridge import eventbridge_sink
from app.adapters.failures import is_transient
from app.adapters.kafka_events import KafkaEventPublisher
from app.adapters.postgres.archive import PostgresArchiveSource
from app.adapters.postgres.leadership import (
    LEADER_LOCK_KEY,
    AdvisoryLockElection,
    PostgresOutboxRetention,
)
from app.adapters.postgres.partitions import PostgresRetentionStore, ensure_partitions
from app.adapters.postgres.pipeline import PostgresDatabase
from app.adapters.postgres.pool import connector
from app.adapters.s3_lake import S3Lake
from app.adapters.timestream import timestream_sink
from app.ports import EventSink
from app.services.archive import ArchivePolicy, Archiver
from app.services.journal import Topics
from app.services.retention import RetentionPolicy, Verifier, apply_retention
from app.services.schedule import SchedulePolicy, Scheduler
from app.services.sinks import SinkRelay, position_name
from app.settings import LakeSettings, RetentionSettings, SchedulerSettings, Settings
from app.telemetry.lake import archive_span
from app.telemetry.metrics import QisMetrics
from app.telemetry.pipeline_tracing import PipelineTracing
from app.telemetry.sinks import sink_span


def archive_policy(settings: LakeSettings) -> ArchivePolicy:
    return ArchivePolicy(
        late_grace=timedelta(seconds=settings.archive_late_grace_seconds),
        max_hours_per_round=settings.archive_max_hours_per_round,
        recheck_hours=settings.archive_recheck_hours,
    )


def build_archiver(
    settings: LakeSettings, pool: asyncpg.Pool, metrics: QisMetrics | None = None
) -> Archiver:
    """The lake archive over the database pool and the lake bucket."""
    return Archiver(
        PostgresArchiveSource(pool, settings.row_group_rows),
        S3Lake.from_settings(settings),
        archive_policy(settings),
        metrics=metrics,
        span=archive_span,
    )


def policy(
    settings: SchedulerSettings,
    lake: LakeSettings | None = None,
    retention: RetentionSettings | None = None,
) -> SchedulePolicy:
    return SchedulePolicy(
        interval_seconds=settings.interval_seconds,
        relay_batch_size=settings.relay_batch_size,
        window_batch_size=settings.window_batch_size,
        outbox_retention_seconds=settings.outbox_retention_seconds,
        purge_interval_seconds=settings.purge_interval_seconds,
        sink_interval_seconds=settings.sink_interval_seconds,
        maintenance_interval_seconds=(retention or RetentionSettings()).interval_seconds,
        archive_interval_seconds=(lake or LakeSettings()).archive_interval_seconds,
    )


def partition_maintenance(
    settings: RetentionSettings, pool: asyncpg.Pool, verify: Verifier | None = None
) -> Callable[[], Awaitable[None]]:
    """The leader's round: day partitions ahead, then retention (when configured).

    `verify`: the archive's verification of one hour against its lake manifest; without
    it retention relies on `lake_hours.verified_at` as the archive left it.
    """
    retention = RetentionPolicy(
        days=settings.db_days,
        lock_timeout_seconds=settings.lock_timeout_seconds,
        lock_attempts=settings.lock_attempts,
    )

    async def round_() -> None:
        async with pool.acquire() as conn:
            now = datetime.now(UTC)
            await ensure_partitions(
                conn,
                now.date(),
                settings.partitions_ahead_days,
                lock_timeout_seconds=settings.lock_timeout_seconds,
            )
            await apply_retention(PostgresRetentionStore(conn), retention, now, verify=verify)

    return round_


def build_scheduler(
    settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    *,
    metrics: QisMetrics | None = None,
    leader_key: int = LEADER_LOCK_KEY,
) -> Scheduler:
    """The scheduler of this process (a started producer required)."""

    connect = connector(
        settings.db.writer_dsn, settings.db, command_timeout=settings.db.command_timeout_seconds
    )
    archiver = build_archiver(settings.lake, pool, metrics) if settings.lake.enabled else None
    sinks = build_sinks(settings, PostgresDatabase(pool), metrics)
    return Scheduler(
        policy(settings.scheduler, settings.lake, settings.retention),
        AdvisoryLockElection(connect, leader_key),
        PostgresDatabase(pool),
        PostgresOutboxRetention(pool, [position_name(relay.sink) for relay in sinks]),
        KafkaEventPublisher(producer, settings.kafka.ack_timeout_seconds),
        Topics.from_settings(settings.kafka),
        transient=is_transient,
        metrics=metrics,
        tracing=PipelineTracing(),
        archiver=archiver,
        maintenance=partition_maintenance(
            settings.retention, pool, archiver.verify if archiver is not None else None
        ),
        sinks=sinks,
    )


def build_sinks(
    settings: Settings, db: PostgresDatabase, metrics: QisMetrics | None
) -> list[SinkRelay]:
    """A relay for each enabled sink, over the official-value and quality-alert topics."""
    candidates: tuple[EventSink | None, ...] = (
        eventbridge_sink(settings.eventbridge),
        timestream_sink(settings.timestream),
    )
    enabled = [sink for sink in candidates if sink is not None]
    topics = Topics.from_settings(settings.kafka)
    return [
        SinkRelay(
            sink,
            db,
            (topics.official_values, topics.quality_alerts),
            metrics=metrics,
            span=sink_span,
        )
        for sink in enabled
    ]
