"""Instrumentation that records nothing: the default of every service's `metrics` and
`tracing`, for unit tests and for a process without telemetry.

The real ones are `app.telemetry.metrics.QisMetrics` and
`app.telemetry.pipeline_tracing.PipelineTracing`; the composition passes them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

from app.domain.observation import Observation
from app.domain.reconciliation import Reconciliation
from app.domain.series import SeriesConfig
from app.domain.versions import VersionDecision
from app.ports import Metrics, OutboxMessage, QualityStep, ReconciliationStep, SnapKey, Tracing


class NullMetrics:
    """`Metrics` that records nothing."""

    def reconciliation(self, succeeded: bool) -> None:
        return None

    def quality_score(self, score: float, series: str) -> None:
        return None

    def dead_letters(self, count: int, stage: str) -> None:
        return None

    def publication_freshness(self, seconds: float) -> None:
        return None

    def cache_lookup(self, level: str, hit: bool) -> None:
        return None

    def cache_fallback(self) -> None:
        return None

    def consumer_lag(self, topic: str, lag: int) -> None:
        return None


class NullStep:
    """A step of work that is not traced: its annotations are dropped."""

    def reconciled(
        self,
        config: SeriesConfig,
        observations: Sequence[Observation],
        result: Reconciliation,
    ) -> None:
        return None

    def assessed(
        self, config: SeriesConfig, result: Reconciliation, decision: VersionDecision
    ) -> None:
        return None


NULL_STEP = NullStep()
# nullcontext is reentrant and reusable: one for every untraced step.
UNTRACED: AbstractContextManager[NullStep] = nullcontext(NULL_STEP)
_NO_SPAN: AbstractContextManager[None] = nullcontext()


class NullTracing:
    """`Tracing` that traces nothing and propagates no context."""

    def recording(self) -> bool:
        return False

    def reconciliation(
        self, key: SnapKey, traced: bool
    ) -> AbstractContextManager[ReconciliationStep]:
        return UNTRACED

    def quality_assessment(self, key: SnapKey, traced: bool) -> AbstractContextManager[QualityStep]:
        return UNTRACED

    def outbox_relay(self, messages: Sequence[OutboxMessage]) -> AbstractContextManager[None]:
        return _NO_SPAN

    def trace_headers(self) -> dict[str, str]:
        return {}


NULL_METRICS: Metrics = NullMetrics()
NULL_TRACING: Tracing = NullTracing()
