"""Examples of the OpenAPI document: worked example 1 of docs/domain.md, built from domain types.

Series `ETH-USD`, expected sources A, B and C, snap 2026-01-15T14:00:00Z; A reports
100.00, B 100.02, C 99.99, each observed a second before the snap: the median is 100.00,
every quality dimension is 1, so version 1 is `official`. The values are built with the
domain structs (so they have the shapes the api returns) and fixed, so the committed
`openapi.json` only changes when the contract does.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
from litestar.openapi.spec import Example, Reference

from app.api.problems import Problem, ProblemItem
from app.api.wire import ObservationsAccepted
from app.domain.descriptor import (
    Calendar,
    Descriptor,
    EarlyClose,
    Instrument,
    StoredDescriptor,
    TradingSession,
    VendorSymbol,
    Venue,
)
from app.domain.observation import Observation, derive_observation_id
from app.domain.quality import Quality
from app.domain.reading import (
    HistoryItem,
    HistoryPage,
    LineagePage,
    QualityAverages,
    QualitySummary,
    VersionList,
)
from app.domain.series import Series, SeriesConfig
from app.domain.versions import OfficialValue

SERIES = "ETH-USD"
SNAP_TEXT = "2026-01-15T14:00:00Z"
SNAP = datetime(2026, 1, 15, 14, tzinfo=UTC)
OBSERVED_AT = SNAP - timedelta(seconds=1)
RECEIVED_AT = SNAP - timedelta(milliseconds=800)
RECORDED_AT = SNAP + timedelta(seconds=2)
VALUES = {"A": 100.00, "B": 100.02, "C": 99.99}
CONFIG = SeriesConfig(expected_sources=("A", "B", "C"), min_sources=2)


def _observation(source: str, value: float) -> Observation:
    return Observation(
        observation_id=derive_observation_id(SERIES, source, SNAP, value, OBSERVED_AT, None),
        reference_data_id=SERIES,
        source=source,
        snap=SNAP,
        value=value,
        observed_at=OBSERVED_AT,
        received_at=RECEIVED_AT,
    )


OBSERVATIONS = [_observation(source, value) for source, value in VALUES.items()]
OFFICIAL = OfficialValue(
    reference_data_id=SERIES,
    snap=SNAP,
    version=1,
    value=100.00,
    status="official",
    method="median",
    sources_used=("A", "B", "C"),
    sources_excluded=(),
    quality=Quality(score=1.0, completeness=1.0, timeliness=1.0, consistency=1.0, validity=1.0),
    supersedes=None,
    recorded_at=RECORDED_AT,
)


def value(obj: Any) -> Any:
    """A struct as the JSON the api sends."""
    return msgspec.json.decode(msgspec.json.encode(obj))


def example(summary: str, obj: Any) -> list[Example]:
    return [Example(summary=summary, value=value(obj))]


SUBMISSION = {
    "observations": [
        {
            "reference_data_id": SERIES,
            "source": o.source,
            "snap": SNAP_TEXT,
            "value": o.value,
            "observed_at": "2026-01-15T13:59:59Z",
        }
        for o in OBSERVATIONS
    ]
}
SUBMISSION_EXAMPLES: dict[str, Example | Reference] = {
    "worked-example-1": Example(summary="A, B and C report ETH-USD at 14:00", value=SUBMISSION)
}
CONFIG_EXAMPLES: dict[str, Example | Reference] = {
    "eth-usd": Example(
        summary="three expected sources, at least two, median",
        value={"expected_sources": ["A", "B", "C"], "min_sources": 2, "method": "median"},
    )
}
ACCEPTED = ObservationsAccepted(
    accepted=3, duplicates=0, observation_ids=[o.observation_id for o in OBSERVATIONS]
)
SERIES_EXAMPLE = Series(
    reference_data_id=SERIES, config=CONFIG, updated_at=SNAP - timedelta(days=1)
)
DESCRIPTOR = Descriptor(
    instrument=Instrument(
        asset_class="crypto", name="Ether / US dollar", currency="ETH", quote_currency="USD"
    ),
    venues=[
        Venue(
            mic="XCME",
            name="CME Globex",
            timezone="America/Chicago",
            primary=True,
            sessions=[
                TradingSession(
                    days=["sun", "mon", "tue", "wed", "thu"], open="17:00", close="16:00"
                )
            ],
        )
    ],
    vendor_symbols=[
        VendorSymbol(vendor="bloomberg", symbol="XETUSD Curncy", field="PX_LAST"),
        VendorSymbol(vendor="refinitiv", symbol="ETH=", venue="XCME"),
    ],
    calendars=[
        Calendar(
            name="cme-crypto",
            timezone="America/Chicago",
            holidays=[date(2026, 12, 25)],
            early_closes=[EarlyClose(day=date(2026, 12, 24), close="12:15")],
        )
    ],
    tags=["g10-crypto"],
)
DESCRIPTOR_EXAMPLES: dict[str, Example | Reference] = {
    "eth-usd": Example(
        summary="an instrument, a venue, two vendors, a calendar", value=value(DESCRIPTOR)
    )
}
STORED_DESCRIPTOR = StoredDescriptor(
    reference_data_id=SERIES,
    revision=2,
    updated_at=SNAP - timedelta(hours=2),
    descriptor=DESCRIPTOR,
)
SERIES_PAGE = {"items": [value(SERIES_EXAMPLE)], "next_cursor": None}
HISTORY = HistoryPage(
    items=[HistoryItem(**msgspec.structs.asdict(OFFICIAL), bucket=SNAP, count=1)],
    next_cursor=None,
)
VERSIONS = VersionList(items=[OFFICIAL])
LINEAGE = LineagePage(items=OBSERVATIONS, next_cursor=None)
QUALITY = QualitySummary(
    reference_data_id=SERIES,
    from_=SNAP,
    to=SNAP + timedelta(hours=1),
    count=1,
    average_score=1.0,
    minimum_score=1.0,
    suspect_count=0,
    average_dimensions=QualityAverages(
        completeness=1.0, timeliness=1.0, consistency=1.0, validity=1.0
    ),
)


def problem(status: int, title: str, detail: str, *errors: ProblemItem) -> Problem:
    return Problem(
        title=title,
        status=status,
        detail=detail,
        errors=list(errors) if errors else msgspec.UNSET,
    )


PROBLEMS: dict[int, Problem] = {
    400: problem(
        400,
        "Bad Request",
        "version and as_of are mutually exclusive",
        ProblemItem(loc=["query", "as_of"], msg="not allowed with version"),
    ),
    401: problem(401, "Unauthorized", "bearer token is not valid"),
    403: problem(403, "Forbidden", "the token does not grant the scope qis/admin"),
    404: problem(404, "Not Found", f"no official value of {SERIES} at {SNAP_TEXT}"),
    409: problem(409, "Conflict", "the stored descriptor changed meanwhile; read it and retry"),
    413: problem(413, "Content Too Large", "Request Entity Too Large"),
    415: problem(415, "Unsupported Media Type", "expected application/json, got text/plain"),
    422: problem(
        422,
        "Unprocessable Content",
        "1 invalid observation(s); nothing was accepted",
        ProblemItem(loc=["observations", 0, "snap"], msg="must carry a UTC offset (Z or +-hh:mm)"),
    ),
    429: problem(429, "Too Many Requests", "rate limit of qis/read exceeded; retry later"),
    500: problem(500, "Internal Server Error", "internal error; see the trace id"),
    503: problem(
        503,
        "Service Unavailable",
        "ingestion log unavailable; nothing from this request was accepted",
    ),
}

# What any route answers when PostgreSQL, Redis or Kafka does not (app/entrypoints/api.py).
STORE_UNAVAILABLE = problem(
    503, "Service Unavailable", "a backing store did not answer; retry later"
)
