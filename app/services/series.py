"""Series configuration use case: create or replace a configuration, audited."""

from __future__ import annotations

from app.domain.series import Series, SeriesConfig, ensure_valid_series_config
from app.ports import AuditEntry, PipelineDatabase
from app.services.journal import write_journal
from app.services.reconcile import series_state


async def configure_series(
    db: PipelineDatabase,
    reference_data_id: str,
    config: SeriesConfig,
    *,
    actor: str,
) -> Series:
    """Store `config` for the series; raises InvalidSeriesConfig listing every broken rule.

    The change applies to reconciliations from then on (published versions stay as they
    are). Re-sending the stored configuration changes nothing, so it is not audited and
    keeps its `updated_at`.
    """
    ensure_valid_series_config(config)
    async with db.transaction() as store:
        # The series lock orders this change against reconciliations of the series.
        await store.lock_series([reference_data_id])
        before = (await store.series([reference_data_id])).get(reference_data_id)
        if before is not None and before.config == config:
            return before
        at = await store.open_journal()
        after = await store.save_series(reference_data_id, config, at)
        entry = AuditEntry(
            actor=actor,
            action="series.created" if before is None else "series.configured",
            entity_type="reference_data",
            entity_id=reference_data_id,
            before=None if before is None else series_state(before),
            after=series_state(after),
        )
        await write_journal(store, at, [entry], [])
        return after
