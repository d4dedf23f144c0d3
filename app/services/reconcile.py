"""Reconcile (series, snap)s into versioned official values, in the writer's transaction.

Used by the worker (`reconciliation_stage`, its `after_store` hook: same transaction as the
observations and the consumer offsets) and by the scheduler (`close_due_windows`). Both
call `reconcile_snaps`, which for the given snaps:

1. locks the touched series (sorted by lock key), so one series is reconciled by one
   transaction at a time, whichever process runs it, also across a rebalance;
2. creates series never configured with the defaults (audited as `series.created`);
3. loads every observation of each snap, its latest version, the previous snap's value
   (for spike detection; a snap earlier in the same batch counts with its new value) and
   its state, then reconciles, scores and applies the publication rules (`decide_version`);
4. opens the journal and writes, in this order: the new versions (`recorded_at` = the
   journal time), the snap states, the audit records and the outbox events.

`recorded_at` is `clock_timestamp()` read just after the journal lock is granted: the
last step before the inserts and the commit, a few milliseconds before the commit
becomes visible. The journal lock serialises that tail of every writer, so `recorded_at`
increases in commit order: a later version of a snap always has a later `recorded_at`,
and `as_of=T` is monotonic in T. What remains is the gap between `recorded_at` and the
commit (inserts, offsets, fsync): a reader at exactly that moment does not see a version
that `as_of` that moment later returns. `now()` (the transaction's start) was rejected:
a batch that waited for a series lock would record a time before the version it
supersedes.

Audit granularity: one `observations.accepted` record per (batch, series) listing the new
observation ids; one `official_value.created` per version (before = the superseded
version); one `quality_alert.raised` per suspect version; `snap.insufficient` when a
window closes without enough usable sources; `snap.insufficient_after_publication`
when new observations leave a published snap without enough usable sources (versions
cannot be withdrawn, so this is recorded instead). Publication is audited by the relay.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from app.domain.dead_letter import error_text, storable_text
from app.domain.events import (
    OfficialValuePublished,
    events_for_version,
    reconciliation_failed,
)
from app.domain.observation import Observation
from app.domain.reconciliation import Reconciliation, all_expected_reported, reconcile
from app.domain.series import Series, SeriesConfig, is_window_closed, window_closes_at
from app.domain.snaps import snap_state_after
from app.domain.versions import OfficialValue, VersionDecision, decide_version, official_value
from app.ports import (
    AuditEntry,
    Metrics,
    OutboxMessage,
    PipelineDatabase,
    PipelineStore,
    SnapKey,
    SnapState,
    SnapStateName,
    Tracing,
)
from app.services.instrumentation import NULL_METRICS, NULL_TRACING
from app.services.journal import (
    Topics,
    event_message,
    iso,
    json_native,
    snap_entity,
    version_entity,
    write_journal,
)

_log = logging.getLogger("qis.reconcile")

DEFAULT_CONFIG = SeriesConfig()
SERIES_PER_TRANSACTION = 50
# Per-snap custom spans one reconciliation call makes at most (the first snaps in
# (series, snap) order among those to trace). Under load a worker transaction holds the
# snaps of hundreds of sampled records; their spans all show the same code path, and at
# 10,000 obs/s they cost the 2-core benchmark machine about a sixth of its freshness
# (benchmarks/results/freshness.md).
MAX_TRACED_SNAPS = 16

C = TypeVar("C")


class SnapOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one reconciliation decided and left behind."""

    reference_data_id: str
    snap: datetime
    reason: str
    status: str
    version: int | None  # the version published now, if any
    state: SnapStateName


class _Plan(msgspec.Struct, frozen=True, kw_only=True):
    key: SnapKey
    config: SeriesConfig
    result: Reconciliation
    decision: VersionDecision
    latest: OfficialValue | None
    state_before: SnapState | None
    state: SnapState
    window_closed: bool


def reconciliation_stage(
    store_for: Callable[[C], PipelineStore],
    *,
    topics: Topics,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
) -> Callable[[C, Sequence[Observation], Collection[str], Mapping[str, str]], Awaitable[None]]:
    """The worker's `after_store` hook: reconcile every snap the new observations touched."""

    async def after_store(
        conn: C,
        observations: Sequence[Observation],
        traced: Collection[str] | None = None,
        actors: Mapping[str, str] | None = None,
    ) -> None:
        """`traced`: ids of observations whose request was sampled; their snaps get the
        custom spans (None: every snap, when the current span is recorded). `actors`: who
        submitted each observation, by id; the audit actor of a snap's changes is who
        submitted its new observations (several: comma-separated, sorted), else "worker"
        (records from before the api named one)."""
        if not observations:
            return  # a redelivered batch: its effects committed with it the first time
        for actor, group in _by_actor(observations, actors or {}).items():
            accepted: dict[str, list[str]] = {}
            for observation in group:
                accepted.setdefault(observation.reference_data_id, []).append(
                    observation.observation_id
                )
            traced_snaps = (
                None
                if traced is None
                else {(o.reference_data_id, o.snap) for o in group if o.observation_id in traced}
            )
            await reconcile_snaps(
                store_for(conn),
                [(o.reference_data_id, o.snap) for o in group],
                actor=actor,
                topics=topics,
                metrics=metrics,
                tracing=tracing,
                accepted=accepted,
                traced_snaps=traced_snaps,
            )

    return after_store


async def close_due_windows(
    db: PipelineDatabase,
    *,
    topics: Topics,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    limit: int = 1000,
    series_per_transaction: int = SERIES_PER_TRANSACTION,
    transient: Callable[[BaseException], bool] = lambda _: True,
) -> list[SnapOutcome]:
    """Reconcile open snaps whose window has ended: publish what arrived, or `insufficient`.

    A group of series whose transaction fails for a reason that is not `transient` is
    retried series by series; a series that still fails has its due snaps set aside
    (`failed`, audited, alerted, counted) so the others go on and it is not retried
    every round. Transient failures are raised: the next round retries them.
    """
    meter = metrics or NULL_METRICS
    tracer = tracing or NULL_TRACING
    async with db.transaction() as store:
        due = await store.due_snaps(limit)
    by_series: dict[str, list[SnapKey]] = {}
    for key in due:
        by_series.setdefault(key[0], []).append(key)
    ordered = sorted(by_series)
    outcomes: list[SnapOutcome] = []
    for start in range(0, len(ordered), series_per_transaction):
        group = ordered[start : start + series_per_transaction]
        try:
            keys = [k for s in group for k in by_series[s]]
            outcomes += await _close(db, keys, topics, meter, tracer)
            continue
        except Exception as exc:
            if transient(exc):
                raise
            _log.warning("closing windows failed; isolating", extra={"error": repr(exc)})
        for series_id in group:  # find the series that fail on their own
            try:
                outcomes += await _close(db, by_series[series_id], topics, meter, tracer)
            except Exception as exc:
                if transient(exc):
                    raise
                await _set_aside_windows(db, by_series[series_id], exc, topics, meter, tracer)
    return outcomes


async def _close(
    db: PipelineDatabase,
    keys: Sequence[SnapKey],
    topics: Topics,
    meter: Metrics,
    tracing: Tracing,
) -> list[SnapOutcome]:
    async with db.transaction() as store:
        return await reconcile_snaps(
            store, keys, actor="scheduler", topics=topics, metrics=meter, tracing=tracing
        )


async def _set_aside_windows(
    db: PipelineDatabase,
    keys: Sequence[SnapKey],
    exc: BaseException,
    topics: Topics,
    meter: Metrics,
    tracing: Tracing,
) -> None:
    error = error_text(exc)
    _log.error("snaps set aside", extra={"snaps": len(keys), "error": error})
    async with db.transaction() as store:
        await record_reconciliation_failure(
            store,
            keys,
            actor="scheduler",
            stage="window",
            error=error,
            topics=topics,
            metrics=meter,
            tracing=tracing,
            set_aside=True,
        )


async def record_reconciliation_failure(
    store: PipelineStore,
    keys: Sequence[SnapKey],
    *,
    actor: str,
    stage: str,
    error: str,
    topics: Topics,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    set_aside: bool = False,
) -> None:
    """Record snaps that could not be reconciled: per snap, a `snap.reconciliation_failed`
    audit record and a `reconciliation_failed` event on the quality-alerts topic; counted
    as failed reconciliations. With `set_aside` (the scheduler), snaps with a recorded
    state become `failed`, so windows stop closing them until new observations arrive
    (the worker then reconciles them again), and they are counted as set aside at `stage`
    (the worker counts its dead letters itself)."""
    meter = metrics or NULL_METRICS
    error = storable_text(error)
    unique = sorted({(series_id, snap.astimezone(UTC)) for series_id, snap in keys})
    if not unique:
        return
    if set_aside:
        states = await store.snap_states(unique)
        await store.save_snap_states(
            [msgspec.structs.replace(state, state="failed") for state in states.values()]
        )
    at = await store.open_journal()
    headers = (tracing or NULL_TRACING).trace_headers()
    entries = [
        AuditEntry(
            actor=actor,
            action="snap.reconciliation_failed",
            entity_type="snap",
            entity_id=snap_entity(series_id, snap),
            before=None,
            after={"stage": stage, "error": error},
        )
        for series_id, snap in unique
    ]
    messages = [
        event_message(
            reconciliation_failed(series_id, snap, stage=stage, error=error, failed_at=at),
            topics.quality_alerts,
            series_id,
            headers,
        )
        for series_id, snap in unique
    ]
    await write_journal(store, at, entries, messages)
    for _ in unique:
        meter.reconciliation(succeeded=False)
    if set_aside:
        meter.dead_letters(len(unique), stage)


def _by_actor(
    observations: Sequence[Observation], actors: Mapping[str, str]
) -> dict[str, list[Observation]]:
    """The observations grouped by the audit actor of their snap (see `after_store`)."""
    by_snap: dict[SnapKey, list[Observation]] = {}
    for observation in observations:
        key = (observation.reference_data_id, observation.snap.astimezone(UTC))
        by_snap.setdefault(key, []).append(observation)
    groups: dict[str, list[Observation]] = {}
    for group in by_snap.values():
        names = sorted({actors[o.observation_id] for o in group if o.observation_id in actors})
        groups.setdefault(",".join(names) or "worker", []).extend(group)
    return groups


def failure_stage(
    store_for: Callable[[C], PipelineStore],
    *,
    topics: Topics,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
) -> Callable[[C, Sequence[Observation], str], Awaitable[None]]:
    """The worker's `on_set_aside` hook: record the snaps of a dead-lettered record whose
    reconciliation failed (the letter itself is counted by the worker)."""

    async def on_set_aside(conn: C, observations: Sequence[Observation], error: str) -> None:
        await record_reconciliation_failure(
            store_for(conn),
            [(o.reference_data_id, o.snap) for o in observations],
            actor="worker",
            stage="reconcile",
            error=error,
            topics=topics,
            metrics=metrics,
            tracing=tracing,
        )

    return on_set_aside


async def reconcile_snaps(
    store: PipelineStore,
    keys: Sequence[SnapKey],
    *,
    actor: str,
    topics: Topics,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    accepted: Mapping[str, Sequence[str]] | None = None,
    traced_snaps: Collection[SnapKey] | None = None,
) -> list[SnapOutcome]:
    """Reconcile each (series, snap) and write what the publication rules call for.

    Each snap's reconciliation and quality assessment are traced (`tracing`: the spans
    `multi-source-reconciliation` and `quality-assessment`) for the snaps in
    `traced_snaps` (None: all), at most `MAX_TRACED_SNAPS` of them, and only under a
    recorded span. A worker batch joins the trace of its first sampled record, so nearly
    every large batch is recorded; per-snap spans for all its snaps would trace ~100 % of
    the snaps instead of the sampled 10 %.
    """
    meter = metrics or NULL_METRICS
    tracer = tracing or NULL_TRACING
    unique = sorted({(series_id, snap.astimezone(UTC)) for series_id, snap in keys})
    if not unique:
        return []
    loaded = await _load(store, unique)
    plans = _plan_all(unique, loaded, tracer, _traced(tracer, traced_snaps))
    await store.save_snap_states([p.state for p in plans if p.state != p.state_before])
    entries = _entries_before_versions(loaded.created, accepted, plans, actor)
    for plan in plans:
        if (
            not plan.decision.publish
            and plan.window_closed
            and plan.result.status == "insufficient"
        ):
            meter.reconciliation(succeeded=False)
    publishing = [plan for plan in plans if plan.decision.publish]
    if not entries and not publishing:
        return _outcomes(plans)  # nothing changed: no need to queue behind the journal lock
    published = await _journal(store, publishing, entries, actor, topics, meter, tracer)
    _log.debug(
        "snaps reconciled", extra={"actor": actor, "snaps": len(plans), "published": published}
    )
    return _outcomes(plans)


class _Loaded(msgspec.Struct, frozen=True, kw_only=True):
    """What one reconciliation reads, under the series locks."""

    created: list[Series]
    configs: dict[str, SeriesConfig]
    now: datetime
    observations: dict[SnapKey, list[Observation]]
    latest: dict[SnapKey, OfficialValue]
    previous: dict[SnapKey, tuple[datetime, float]]
    states: dict[SnapKey, SnapState]


async def _load(store: PipelineStore, unique: Sequence[SnapKey]) -> _Loaded:
    """Lock the series (sorted), create the unconfigured ones, read every snap's inputs."""
    series_ids = sorted({series_id for series_id, _ in unique})
    await store.lock_series(series_ids)
    created = await store.create_missing_series(series_ids, DEFAULT_CONFIG)
    return _Loaded(
        created=created,
        configs={sid: s.config for sid, s in (await store.series(series_ids)).items()},
        now=await store.clock(),
        observations=await store.observations(unique),
        latest=await store.latest_versions(unique),
        previous=await store.previous_values(unique),
        states=await store.snap_states(unique),
    )


def _traced(tracer: Tracing, traced_snaps: Collection[SnapKey] | None) -> set[SnapKey] | None:
    """The snaps that get custom spans (None: all). Children of an unrecorded span are
    never recorded, so under one none do."""
    if not tracer.recording():
        return set()
    if traced_snaps is None:
        return None
    return {(series_id, snap.astimezone(UTC)) for series_id, snap in traced_snaps}


def _plan_all(
    unique: Sequence[SnapKey],
    loaded: _Loaded,
    tracer: Tracing,
    traced: set[SnapKey] | None,
) -> list[_Plan]:
    """Plan each snap in (series, snap) order; a snap's spike check compares with the
    previous snap's value, which may be one planned earlier in the same call."""
    plans: list[_Plan] = []
    carried: dict[str, tuple[datetime, float]] = {}
    spans_left = MAX_TRACED_SNAPS
    for key in unique:
        series_id, snap = key
        traced_here = spans_left > 0 and (traced is None or key in traced)
        spans_left -= traced_here
        before = loaded.previous.get(key)
        in_batch = carried.get(series_id)
        if in_batch is not None and (before is None or in_batch[0] >= before[0]):
            before = in_batch
        plan = _plan(
            key,
            loaded.configs[series_id],
            loaded.observations.get(key, []),
            None if before is None else before[1],
            loaded.latest.get(key),
            loaded.states.get(key),
            loaded.now,
            tracer,
            traced_here,
        )
        plans.append(plan)
        value = plan.result.value if plan.decision.publish else _value(plan.latest)
        if value is not None:
            carried[series_id] = (snap, value)
    return plans


def _entries_before_versions(
    created: Sequence[Series],
    accepted: Mapping[str, Sequence[str]] | None,
    plans: Sequence[_Plan],
    actor: str,
) -> list[AuditEntry]:
    """Audit entries that do not depend on the journal time: series created, observations
    accepted, snap state changes."""
    entries = [_series_created(series, actor) for series in created]
    entries += [
        AuditEntry(
            actor=actor,
            action="observations.accepted",
            entity_type="reference_data",
            entity_id=series_id,
            before=None,
            after={"count": len(ids), "observation_ids": sorted(ids)},
        )
        for series_id, ids in sorted((accepted or {}).items())
    ]
    for plan in plans:
        entries += _state_entries(plan, actor)
    return entries


async def _journal(
    store: PipelineStore,
    publishing: Sequence[_Plan],
    entries: list[AuditEntry],
    actor: str,
    topics: Topics,
    meter: Metrics,
    tracer: Tracing,
) -> int:
    """Under the journal lock: the new versions (recorded at the journal time), their
    audit entries and their events; return how many versions were recorded."""
    at = await store.open_journal()
    headers = tracer.trace_headers()
    versions: list[OfficialValue] = []
    messages: list[OutboxMessage] = []
    for plan in publishing:
        official = official_value(*plan.key, plan.result, plan.decision, recorded_at=at)
        versions.append(official)
        entries += _version_entries(plan, official, actor)
        for event in events_for_version(
            official, plan.result.observation_ids, plan.config.quality_policy
        ):
            topic = (
                topics.official_values
                if isinstance(event, OfficialValuePublished)
                else topics.quality_alerts
            )
            messages.append(event_message(event, topic, official.reference_data_id, headers))
        meter.reconciliation(succeeded=True)
        meter.quality_score(official.quality.score, official.reference_data_id)
    await store.insert_versions(versions)
    await write_journal(store, at, entries, messages)
    return len(versions)


def _outcomes(plans: Sequence[_Plan]) -> list[SnapOutcome]:
    return [
        SnapOutcome(
            reference_data_id=p.key[0],
            snap=p.key[1],
            reason=p.decision.reason,
            status=p.result.status,
            version=p.decision.version if p.decision.publish else None,
            state=p.state.state,
        )
        for p in plans
    ]


def _plan(
    key: SnapKey,
    config: SeriesConfig,
    observations: Sequence[Observation],
    previous_value: float | None,
    latest: OfficialValue | None,
    state_before: SnapState | None,
    now: datetime,
    tracing: Tracing = NULL_TRACING,
    traced: bool = True,
) -> _Plan:
    series_id, snap = key
    with tracing.reconciliation(key, traced) as step:
        result = reconcile(config, snap, observations, previous_value=previous_value)
        step.reconciled(config, observations, result)
    window_closed = is_window_closed(config, snap, now)
    with tracing.quality_assessment(key, traced) as assessment:
        decision = decide_version(
            result,
            latest,
            all_expected_reported=all_expected_reported(config, result),
            window_closed=window_closed,
        )
        assessment.assessed(config, result, decision)
    state = snap_state_after(
        publishes_now=decision.publish, had_version=latest is not None, window_closed=window_closed
    )
    version = decision.version if decision.publish else (latest.version if latest else None)
    return _Plan(
        key=key,
        config=config,
        result=result,
        decision=decision,
        latest=latest,
        state_before=state_before,
        state=SnapState(
            reference_data_id=series_id,
            snap=snap,
            window_closes_at=window_closes_at(config, snap),
            state=state,
            latest_version=version,
        ),
        window_closed=window_closed,
    )


def _value(latest: OfficialValue | None) -> float | None:
    return None if latest is None else latest.value


def series_state(series: Series) -> dict[str, Any]:
    """A series as audited: its configuration and when it took effect."""
    return {"config": json_native(series.config), "updated_at": iso(series.updated_at)}


def _series_created(series: Series, actor: str) -> AuditEntry:
    return AuditEntry(
        actor=actor,
        action="series.created",
        entity_type="reference_data",
        entity_id=series.reference_data_id,
        before=None,
        after=series_state(series),
    )


def _state_entries(plan: _Plan, actor: str) -> list[AuditEntry]:
    """The audit entry of a snap that became insufficient, if it did (most plans: none)."""
    series_id, snap = plan.key
    if plan.decision.reason == "insufficient_after_publication" and plan.latest is not None:
        return [
            AuditEntry(
                actor=actor,
                action="snap.insufficient_after_publication",
                entity_type="snap",
                entity_id=snap_entity(series_id, snap),
                before={"latest_version": plan.latest.version},
                after=_facts(plan),
            )
        ]
    was = None if plan.state_before is None else plan.state_before.state
    if plan.state.state == "insufficient" and was != "insufficient":
        return [
            AuditEntry(
                actor=actor,
                action="snap.insufficient",
                entity_type="snap",
                entity_id=snap_entity(series_id, snap),
                before=None if was is None else {"state": was},
                after={"state": "insufficient", **_facts(plan)},
            )
        ]
    return []


def _facts(plan: _Plan) -> dict[str, Any]:
    """What an insufficient snap's audit entry records of its reconciliation."""
    return {
        "sources_used": list(plan.result.sources_used),
        "sources_excluded": json_native(plan.result.sources_excluded),
        "min_sources": plan.config.min_sources,
    }


def _version_entries(plan: _Plan, official: OfficialValue, actor: str) -> list[AuditEntry]:
    series_id = official.reference_data_id
    entity = version_entity(series_id, official.snap, official.version)
    after = {
        **json_native(official),
        "observation_ids": list(plan.result.observation_ids),
        "changes": list(plan.decision.changes),
    }
    entries = [
        AuditEntry(
            actor=actor,
            action="official_value.created",
            entity_type="official_value",
            entity_id=entity,
            before=None if plan.latest is None else json_native(plan.latest),
            after=after,
        )
    ]
    if official.status == "suspect":
        entries.append(
            AuditEntry(
                actor=actor,
                action="quality_alert.raised",
                entity_type="official_value",
                entity_id=entity,
                before=None,
                after={
                    "quality": json_native(official.quality),
                    "threshold": plan.config.quality_policy.threshold,
                },
            )
        )
    return entries
