"""The API's routes as `Call`s, shared by the sync and async clients."""

from __future__ import annotations

from datetime import datetime

import msgspec

from qis_client._core import Call, instant, params, segment
from qis_client.models import (
    Descriptor,
    Granularity,
    HistoryPage,
    LineagePage,
    ObservationsAccepted,
    OfficialValue,
    QualitySummary,
    Readiness,
    Series,
    SeriesConfig,
    SeriesPage,
    StoredDescriptor,
    VersionList,
)

_encoder = msgspec.json.Encoder()
SERIES = "/v1/reference-data"


def post_observations(body: bytes) -> Call[ObservationsAccepted]:
    return Call("POST", "/v1/observations", ObservationsAccepted, frozenset({202}), content=body)


def put_series(reference_data_id: str, config: SeriesConfig) -> Call[Series]:
    return Call(
        "PUT", f"{SERIES}/{segment(reference_data_id)}", Series, content=_encoder.encode(config)
    )


def get_series(reference_data_id: str) -> Call[Series]:
    return Call("GET", f"{SERIES}/{segment(reference_data_id)}", Series)


def put_descriptor(reference_data_id: str, descriptor: Descriptor) -> Call[StoredDescriptor]:
    return Call(
        "PUT",
        f"{SERIES}/{segment(reference_data_id)}/descriptor",
        StoredDescriptor,
        content=_encoder.encode(descriptor),
    )


def get_descriptor(reference_data_id: str) -> Call[StoredDescriptor]:
    return Call("GET", f"{SERIES}/{segment(reference_data_id)}/descriptor", StoredDescriptor)


def list_series(limit: int | None, cursor: str | None) -> Call[SeriesPage]:
    return Call("GET", SERIES, SeriesPage, params=params(limit=limit, cursor=cursor))


def official_value(
    reference_data_id: str, snap: datetime, version: int | None, as_of: datetime | None
) -> Call[OfficialValue]:
    return Call(
        "GET",
        f"{SERIES}/{segment(reference_data_id)}/official-values/{instant(snap)}",
        OfficialValue,
        params=params(version=version, as_of=as_of),
    )


def versions(reference_data_id: str, snap: datetime) -> Call[VersionList]:
    return Call(
        "GET",
        f"{SERIES}/{segment(reference_data_id)}/official-values/{instant(snap)}/versions",
        VersionList,
    )


def history(
    reference_data_id: str,
    from_: datetime,
    to: datetime,
    granularity: Granularity | None,
    as_of: datetime | None,
    limit: int | None,
    cursor: str | None,
) -> Call[HistoryPage]:
    return Call(
        "GET",
        f"{SERIES}/{segment(reference_data_id)}/official-values",
        HistoryPage,
        params=params(
            from_=from_, to=to, granularity=granularity, as_of=as_of, limit=limit, cursor=cursor
        ),
    )


def lineage(
    reference_data_id: str, snap: datetime, limit: int | None, cursor: str | None
) -> Call[LineagePage]:
    return Call(
        "GET",
        f"{SERIES}/{segment(reference_data_id)}/observations",
        LineagePage,
        params=params(snap=snap, limit=limit, cursor=cursor),
    )


def quality(
    reference_data_id: str, window: str | None, from_: datetime | None, to: datetime | None
) -> Call[QualitySummary]:
    return Call(
        "GET",
        f"{SERIES}/{segment(reference_data_id)}/quality",
        QualitySummary,
        params=params(window=window, from_=from_, to=to),
    )


def readiness() -> Call[Readiness]:
    return Call("GET", "/health/ready", Readiness, frozenset({200, 503}), retry=False)
