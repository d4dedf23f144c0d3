"""`qis scheduler`: the scheduling service over PostgreSQL and Kafka."""

from __future__ import annotations

import asyncpg
from aiokafka import AIOKafkaProducer

from app.adapters.failures import is_transient
from app.adapters.kafka_events import KafkaEventPublisher
from app.adapters.postgres.leadership import (
    LEADER_LOCK_KEY,
    AdvisoryLockElection,
    PostgresOutboxRetention,
)
from app.adapters.postgres.pipeline import PostgresDatabase
from app.adapters.postgres.pool import connector
from app.services.journal import Topics
from app.services.schedule import SchedulePolicy, Scheduler
from app.settings import SchedulerSettings, Settings
from app.telemetry.metrics import QisMetrics
from app.telemetry.pipeline_tracing import PipelineTracing


def policy(settings: SchedulerSettings) -> SchedulePolicy:
    return SchedulePolicy(
        interval_seconds=settings.interval_seconds,
        relay_batch_size=settings.relay_batch_size,
        window_batch_size=settings.window_batch_size,
        outbox_retention_seconds=settings.outbox_retention_seconds,
        purge_interval_seconds=settings.purge_interval_seconds,
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
        policy(settings.scheduler),
        AdvisoryLockElection(connect, leader_key),
        PostgresDatabase(pool),
        PostgresOutboxRetention(pool),
        KafkaEventPublisher(producer, settings.kafka.ack_timeout_seconds),
        Topics.from_settings(settings.kafka),
        transient=is_transient,
        metrics=metrics,
        tracing=PipelineTracing(),
    )
