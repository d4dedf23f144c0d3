"""Pure domain: reconciliation, quality, versions.

Standard library and msgspec only, no I/O, no clock (time is always a parameter).
"""

from app.domain.audit import GENESIS_HASH, AuditRecord, audit_record, chain_hash, verify_chain
from app.domain.errors import DomainError, FieldError, InvalidSeriesConfig
from app.domain.events import (
    DomainEvent,
    ObservationsAccepted,
    OfficialValuePublished,
    QualityAlertRaised,
    SeriesConfigured,
    decode_event,
    derive_event_id,
    encode_event,
    events_for_version,
    observations_accepted,
    official_value_published,
    quality_alert_raised,
    series_configured,
)
from app.domain.observation import Observation, derive_observation_id
from app.domain.quality import Quality, assess_quality, quality_score, quality_status
from app.domain.reconciliation import (
    Exclusion,
    Reconciliation,
    all_expected_reported,
    current_observations,
    reconcile,
)
from app.domain.series import (
    QualityPolicy,
    QualityWeights,
    Series,
    SeriesConfig,
    ensure_valid_series_config,
    is_valid_series_id,
    is_window_closed,
    validate_series_config,
    window_closes_at,
)
from app.domain.versions import OfficialValue, VersionDecision, decide_version, official_value

__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "DomainError",
    "DomainEvent",
    "Exclusion",
    "FieldError",
    "InvalidSeriesConfig",
    "Observation",
    "ObservationsAccepted",
    "OfficialValue",
    "OfficialValuePublished",
    "Quality",
    "QualityAlertRaised",
    "QualityPolicy",
    "QualityWeights",
    "Reconciliation",
    "Series",
    "SeriesConfig",
    "SeriesConfigured",
    "VersionDecision",
    "all_expected_reported",
    "assess_quality",
    "audit_record",
    "chain_hash",
    "current_observations",
    "decide_version",
    "decode_event",
    "derive_event_id",
    "derive_observation_id",
    "encode_event",
    "ensure_valid_series_config",
    "events_for_version",
    "is_valid_series_id",
    "is_window_closed",
    "observations_accepted",
    "official_value",
    "official_value_published",
    "quality_alert_raised",
    "quality_score",
    "quality_status",
    "reconcile",
    "series_configured",
    "validate_series_config",
    "verify_chain",
    "window_closes_at",
]
