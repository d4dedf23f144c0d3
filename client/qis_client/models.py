"""Request and response bodies of the HTTP API, as msgspec structs.

They mirror the service's OpenAPI document (`GET /schema/openapi.json`) field for field;
a test compares each struct's JSON schema with the document. Response structs accept
fields they do not know, so a newer server does not break an older client.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

Method = Literal["median", "priority", "trimmed_mean"]
QualityFormula = Literal["product", "weighted_mean"]
QualityStatus = Literal["official", "suspect"]
ExclusionReason = Literal["invalid", "stale", "outlier"]
Granularity = Literal["raw", "1m", "1h", "1d"]
AttributeValue = str | float | bool | None
# Timestamps carry a time zone both ways (the server rejects naive ones, and sends UTC).
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

__all__ = [
    "AssetClass",
    "AttributeValue",
    "AwareDatetime",
    "Calendar",
    "Descriptor",
    "EarlyClose",
    "Exclusion",
    "ExclusionReason",
    "Granularity",
    "HistoryItem",
    "HistoryPage",
    "Instrument",
    "LineagePage",
    "Liveness",
    "Method",
    "Observation",
    "ObservationSubmission",
    "ObservationsAccepted",
    "OfficialValue",
    "Problem",
    "ProblemItem",
    "Quality",
    "QualityAverages",
    "QualityFormula",
    "QualityPolicy",
    "QualityStatus",
    "QualitySummary",
    "QualityWeights",
    "Readiness",
    "Series",
    "SeriesConfig",
    "SeriesPage",
    "StoredDescriptor",
    "SubmittedObservation",
    "TradingSession",
    "VendorSymbol",
    "Venue",
    "VersionList",
    "Weekday",
]


# --- ingestion -------------------------------------------------------------------------


class SubmittedObservation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One observation to post: what `source` said about a series at `snap`.

    Timestamps must carry a time zone. Without `observation_id` the server (and the
    client, identically) derives one from the content, so re-sending is idempotent.
    """

    reference_data_id: str
    source: str
    snap: AwareDatetime
    value: float
    observed_at: AwareDatetime
    observation_id: str | None = None
    attributes: dict[str, AttributeValue] | None = None


class ObservationSubmission(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/observations` body: 1 to 5,000 observations."""

    observations: list[SubmittedObservation]


class ObservationsAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """`202` body: ids in request order; `duplicates` counts ids repeated within the request."""

    accepted: int
    duplicates: int
    observation_ids: list[str]


# --- series configuration --------------------------------------------------------------


class QualityWeights(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Weight of each quality dimension in the score; 0 leaves a dimension out."""

    completeness: float = 1.0
    timeliness: float = 1.0
    consistency: float = 1.0
    validity: float = 1.0


class QualityPolicy(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How the quality dimensions combine into a score, and where `suspect` starts."""

    formula: QualityFormula = "product"
    weights: QualityWeights = QualityWeights()
    threshold: float = 0.95


class SeriesConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Reconciliation, quality and publication rules of one series (`PUT` body).

    Fields left at their default are not sent: the server applies its own defaults.
    """

    expected_sources: tuple[str, ...] = ()
    min_sources: int = 1
    method: Method = "median"
    priority: tuple[str, ...] = ()
    tolerance_bps: float = 50.0
    window_seconds: int = 60
    staleness_seconds: int = 300
    bounds: tuple[float | None, float | None] | None = None
    max_jump_pct: float | None = None
    precision: int | None = None
    quality_policy: QualityPolicy = QualityPolicy()


class Series(msgspec.Struct, frozen=True, kw_only=True):
    """A configured series."""

    reference_data_id: str
    config: SeriesConfig
    updated_at: AwareDatetime


# --- descriptors (docs/descriptors.md: bounds and rules are the server's) ------------------

AssetClass = Literal[
    "fx", "equity", "rates", "credit", "commodity", "crypto", "index", "fund", "other"
]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Instrument(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What is priced; `quote_currency` for a pair (EUR/USD: EUR, then USD)."""

    asset_class: AssetClass
    name: str
    currency: str
    quote_currency: str | None = None
    isin: str | None = None
    description: str = ""


class TradingSession(msgspec.Struct, frozen=True, kw_only=True):
    """A session in the venue's time zone (`HH:MM`; close before open spans midnight)."""

    days: list[Weekday]
    open: str
    close: str


class Venue(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A market the instrument trades on (`mic`: ISO 10383)."""

    mic: str
    name: str
    timezone: str
    primary: bool = False
    sessions: list[TradingSession] = []


class VendorSymbol(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How one vendor (a source) names the instrument."""

    vendor: str
    symbol: str
    field: str | None = None
    venue: str | None = None


class EarlyClose(msgspec.Struct, frozen=True, kw_only=True):
    """A day a calendar closes early (`HH:MM`)."""

    day: date
    close: str


class Calendar(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A holiday calendar the series' snaps follow."""

    name: str
    timezone: str
    holidays: list[date] = []
    early_closes: list[EarlyClose] = []


class Descriptor(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The descriptor document of a series (`PUT .../descriptor` body)."""

    instrument: Instrument
    venues: list[Venue] = []
    vendor_symbols: list[VendorSymbol] = []
    calendars: list[Calendar] = []
    tags: list[str] = []


class StoredDescriptor(msgspec.Struct, frozen=True, kw_only=True):
    """A series' descriptor as stored, with the revision counting its changes."""

    reference_data_id: str
    revision: int
    updated_at: AwareDatetime
    descriptor: Descriptor


class SeriesPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of series ordered by id; `next_cursor` is null on the last page."""

    items: list[Series]
    next_cursor: str | None


# --- official values -------------------------------------------------------------------


class Quality(msgspec.Struct, frozen=True, kw_only=True):
    """Quality score and the dimensions it was computed from, each in [0, 1]."""

    score: float
    completeness: float
    timeliness: float
    consistency: float
    validity: float


class Exclusion(msgspec.Struct, frozen=True, kw_only=True):
    """A source left out of the official value, and why."""

    source: str
    reason: ExclusionReason


class OfficialValue(msgspec.Struct, frozen=True, kw_only=True):
    """One immutable version of a series' official value at a snap."""

    reference_data_id: str
    snap: AwareDatetime
    version: int
    value: float
    status: QualityStatus
    method: Method
    sources_used: tuple[str, ...]
    sources_excluded: tuple[Exclusion, ...]
    quality: Quality
    supersedes: int | None
    recorded_at: AwareDatetime


class VersionList(msgspec.Struct, frozen=True, kw_only=True):
    """Every version of one (series, snap), oldest first."""

    items: list[OfficialValue]


class HistoryItem(OfficialValue, frozen=True, kw_only=True):
    """One point of a history: an official value, its bucket's start and snap count."""

    bucket: AwareDatetime
    count: int


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    """Points in snap order; `next_cursor` is null on the last page."""

    items: list[HistoryItem]
    next_cursor: str | None


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One stored observation; `received_at` is when the platform accepted it."""

    observation_id: str
    reference_data_id: str
    source: str
    snap: AwareDatetime
    value: float
    observed_at: AwareDatetime
    received_at: AwareDatetime
    attributes: dict[str, Any] | None = None


class LineagePage(msgspec.Struct, frozen=True, kw_only=True):
    """The raw observations behind a snap, in order of receipt."""

    items: list[Observation]
    next_cursor: str | None


class QualityAverages(msgspec.Struct, frozen=True, kw_only=True):
    """Average of each quality dimension."""

    completeness: float
    timeliness: float
    consistency: float
    validity: float


class QualitySummary(msgspec.Struct, frozen=True, kw_only=True):
    """Quality of the latest versions whose snap is in `[from, to)`; nulls when `count` is 0."""

    reference_data_id: str
    from_: AwareDatetime = msgspec.field(name="from")
    to: AwareDatetime
    count: int
    average_score: float | None
    minimum_score: float | None
    suspect_count: int
    average_dimensions: QualityAverages | None


# --- health and errors -----------------------------------------------------------------


class Liveness(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /health/live`."""

    status: Literal["ok"] = "ok"


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /health/ready`: `failing` dependencies make it 503, `degraded` ones do not."""

    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, str]
    failing: list[str]
    degraded: list[str] = msgspec.field(default_factory=list)


class ProblemItem(msgspec.Struct, frozen=True):
    """One invalid field: where (`loc`) and why (`msg`)."""

    loc: list[str | int]
    msg: str


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """An RFC 9457 problem document; `errors` only for validation failures."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ProblemItem] | msgspec.UnsetType = msgspec.UNSET
