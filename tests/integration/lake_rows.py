"""Hours of rows written into a test's own lake bucket, in the archive's formats
(app/adapters/lake_formats.py) and layout (app/domain/lake.py), manifest last."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from app.adapters.lake_formats import OBSERVATIONS_SCHEMA, OFFICIAL_VALUES_SCHEMA, ParquetBuilder
from app.adapters.s3_lake import S3Lake, encode_manifest
from app.domain.lake import (
    OBSERVATIONS,
    OFFICIAL_VALUES,
    DatasetSummary,
    Manifest,
    ManifestObject,
    hour_object_key,
    hour_of,
    manifest_key,
)
from app.domain.observation import Observation
from app.domain.versions import OfficialValue

_json = msgspec.json.Encoder()


def official_row(v: OfficialValue) -> tuple[Any, ...]:
    q = v.quality
    return (
        v.reference_data_id, v.snap, v.version, v.value, v.status, v.method,
        list(v.sources_used), _json.encode(v.sources_excluded).decode(), q.score,
        q.completeness, q.timeliness, q.consistency, q.validity, v.supersedes, v.recorded_at,
    )  # fmt: skip


def observation_row(o: Observation) -> tuple[Any, ...]:
    attributes = None if o.attributes is None else _json.encode(o.attributes).decode()
    return (
        o.reference_data_id, o.snap, o.observation_id, o.source, o.value, o.observed_at,
        o.received_at, attributes, o.received_at,
    )  # fmt: skip


def write_hour(
    lake: S3Lake,
    hour: datetime,
    official: Sequence[OfficialValue],
    observations: Sequence[Observation] = (),
    *,
    generation: int = 1,
    per_series: bool = False,
    row_group_rows: int = 100,
) -> Manifest:
    """One hour: per dataset one object of every series sorted by series then snap (the
    archive's layout), or `per_series` one object per series; the manifest last."""
    hour = hour_of(hour)
    objects: list[ManifestObject] = []
    for dataset, schema, rows in (
        (OFFICIAL_VALUES, OFFICIAL_VALUES_SCHEMA, [official_row(v) for v in official]),
        (OBSERVATIONS, OBSERVATIONS_SCHEMA, [observation_row(o) for o in observations]),
    ):
        rows.sort(key=lambda r: (r[0], r[1]))
        groups: dict[str | None, list[tuple[Any, ...]]] = {}
        for row in rows:
            groups.setdefault(row[0] if per_series else None, []).append(row)
        for series, members in groups.items():
            builder = ParquetBuilder(schema, row_group_rows)
            builder.add(members)
            data = builder.finish()
            key = hour_object_key(dataset, hour, generation)
            if series is not None:
                key = key.replace("reference-data/", f"reference-data/{series}/")
            lake.create(key, data)
            objects.append(
                ManifestObject(
                    key=key,
                    dataset=dataset,
                    series=series,
                    rows=len(members),
                    bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    first_series=members[0][0],
                    last_series=members[-1][0],
                )
            )
    manifest = Manifest(
        hour=hour,
        generation=generation,
        created_at=datetime.now(UTC),
        datasets={
            OFFICIAL_VALUES: DatasetSummary(rows=len(official), fingerprint=""),
            OBSERVATIONS: DatasetSummary(rows=len(observations), fingerprint=""),
        },
        objects=tuple(objects),
    )
    lake.create(manifest_key(hour, generation), encode_manifest(manifest))
    return manifest
