"""`qis worker`: the consume service over PostgreSQL and Kafka."""

from __future__ import annotations

import os
import socket
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.adapters.failures import is_transient
from app.adapters.kafka import KafkaDeadLetterSink, KafkaLogSource
from app.adapters.postgres.pipeline import PostgresBatchStore
from app.ports import PipelineStore
from app.services.consume import AfterStore, Consumer, OnSetAside, RetryPolicy
from app.services.journal import Topics
from app.services.reconcile import failure_stage, reconciliation_stage
from app.settings import Settings
from app.telemetry.consume_tracing import ConsumeSpans
from app.telemetry.metrics import QisMetrics
from app.telemetry.pipeline_tracing import PipelineTracing


def _same(store: PipelineStore) -> PipelineStore:
    return store


def reconciling(settings: Settings, metrics: QisMetrics | None) -> tuple[AfterStore, OnSetAside]:
    """The production hooks: reconcile what each transaction stored; record a snap that
    failed to reconcile."""
    topics = Topics.from_settings(settings.kafka)
    tracing = PipelineTracing()
    return (
        reconciliation_stage(_same, topics=topics, metrics=metrics, tracing=tracing),
        failure_stage(_same, topics=topics, metrics=metrics, tracing=tracing),
    )


def build_consumer(
    settings: Settings,
    pool: asyncpg.Pool,
    kafka_consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    *,
    metrics: QisMetrics | None = None,
    after_store: AfterStore | None = None,
    on_set_aside: OnSetAside | None = None,
    owner: str | None = None,
) -> Consumer:
    """The consume service of this process, subscribed (started clients required)."""
    kafka, worker = settings.kafka, settings.worker
    hooks = reconciling(settings, metrics)
    source = KafkaLogSource(kafka_consumer, kafka.observations_topic)
    consumer = Consumer(
        topic=kafka.observations_topic,
        owner=owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        store=PostgresBatchStore(pool, worker.group_id, kafka.observations_topic),
        source=source,
        dead_letters=KafkaDeadLetterSink(producer, kafka.dlq_topic, kafka.max_batch_bytes),
        transient=is_transient,
        after_store=after_store or hooks[0],
        on_set_aside=on_set_aside or hooks[1],
        metrics=metrics,
        tracing=ConsumeSpans(kafka.observations_topic),
        retry=RetryPolicy(
            attempts=worker.retry_attempts,
            initial=worker.retry_initial_seconds,
            longest=worker.retry_max_seconds,
        ),
        max_batch_records=worker.max_batch_records,
        max_transaction_observations=worker.max_transaction_observations,
        poll_timeout_ms=worker.poll_timeout_ms,
        lanes=worker.lanes,
    )
    source.listen(consumer.assigned, consumer.revoked)
    return consumer
