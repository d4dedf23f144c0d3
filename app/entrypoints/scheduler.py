"""`qis scheduler`: the scheduling service over PostgreSQL and Kafka."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from aiokafka import AIOKafkaProducer

from app.adapters.failures import is_transient
from app.adapters.kafka_events import KafkaEventPublisher
from app.adapters.postgres.archive import PostgresArchiveSource
from app.adapters.postgres.leadership import (
    LEADER_LOCK_KEY,
    AdvisoryLockElection,
    PostgresOutboxRetention,
)
from app.adapters.postgres.pipeline import PostgresDatabase
from app.adapters.postgres.pool import connector
from app.adapters.s3_lake import S3Lake
from app.services.archive import ArchivePolicy, Archiver
from app.services.journal import Topics
from app.services.schedule import SchedulePolicy, Scheduler
from app.settings import LakeSettings, SchedulerSettings, Settings
from app.telemetry.lake import archive_span
from app.telemetry.metrics import QisMetrics
from app.telemetry.pipeline_tracing import PipelineTracing


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


def policy(settings: SchedulerSettings, lake: LakeSettings | None = None) -> SchedulePolicy:
    return SchedulePolicy(
        interval_seconds=settings.interval_seconds,
        relay_batch_size=settings.relay_batch_size,
        window_batch_size=settings.window_batch_size,
        outbox_retention_seconds=settings.outbox_retention_seconds,
        purge_interval_seconds=settings.purge_interval_seconds,
        archive_interval_seconds=(lake or LakeSettings()).archive_interval_seconds,
    )


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
    return Scheduler(
        policy(settings.scheduler, settings.lake),
        AdvisoryLockElection(connect, leader_key),
        PostgresDatabase(pool),
        PostgresOutboxRetention(pool),
        KafkaEventPublisher(producer, settings.kafka.ack_timeout_seconds),
        Topics.from_settings(settings.kafka),
        transient=is_transient,
        metrics=metrics,
        tracing=PipelineTracing(),
        archiver=build_archiver(settings.lake, pool, metrics) if settings.lake.enabled else None,
    )
