"""The lake in tests: a bucket of its own on the stack's S3 (moto), and hours written into it
from domain rows, in the layout of app/domain/lake.py."""

from __future__ import annotations

import io
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from app.adapters.lake_reader import LakeFiles, s3_filesystem
from app.domain.lake import (
    OBSERVATIONS,
    OFFICIAL_VALUES,
    DatasetSummary,
    Manifest,
    ManifestObject,
    hour_of,
    manifest_key,
    series_object_key,
)
from app.domain.observation import Observation
from app.domain.versions import OfficialValue
from app.settings import LakeSettings

LAKE = LakeSettings(access_key_id="testing", secret_access_key="testing")
_TS = pa.timestamp("us", "UTC")
_json = msgspec.json.Encoder()

OFFICIAL_SCHEMA = pa.schema(
    [
        ("reference_data_id", pa.string()),
        ("snap", _TS),
        ("version", pa.int32()),
        ("value", pa.float64()),
        ("status", pa.string()),
        ("method", pa.string()),
        ("sources_used", pa.list_(pa.string())),
        ("sources_excluded", pa.string()),
        ("quality_score", pa.float64()),
        ("completeness", pa.float64()),
        ("timeliness", pa.float64()),
        ("consistency", pa.float64()),
        ("validity", pa.float64()),
        ("supersedes", pa.int32()),
        ("recorded_at", _TS),
    ]
)
OBSERVATION_SCHEMA = pa.schema(
    [
        ("observation_id", pa.string()),
        ("reference_data_id", pa.string()),
        ("source", pa.string()),
        ("snap", _TS),
        ("value", pa.float64()),
        ("observed_at", _TS),
        ("received_at", _TS),
        ("attributes", pa.string()),
    ]
)


def new_bucket() -> LakeFiles:
    """A bucket no other test sees."""
    fs = s3_filesystem(LAKE, allow_bucket_creation=True, allow_bucket_deletion=True)
    bucket = f"qis-test-lake-{uuid.uuid4().hex[:12]}"
    fs.create_dir(bucket)
    return LakeFiles(fs, bucket)


def _official_table(rows: Sequence[OfficialValue]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "reference_data_id": v.reference_data_id,
                "snap": v.snap,
                "version": v.version,
                "value": v.value,
                "status": v.status,
                "method": v.method,
                "sources_used": list(v.sources_used),
                "sources_excluded": _json.encode(v.sources_excluded).decode(),
                "quality_score": v.quality.score,
                "completeness": v.quality.completeness,
                "timeliness": v.quality.timeliness,
                "consistency": v.quality.consistency,
                "validity": v.quality.validity,
                "supersedes": v.supersedes,
                "recorded_at": v.recorded_at,
            }
            for v in rows
        ],
        OFFICIAL_SCHEMA,
    )


def _observation_table(rows: Sequence[Observation]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            msgspec.structs.asdict(o)
            | {"attributes": None if o.attributes is None else _json.encode(o.attributes).decode()}
            for o in rows
        ],
        OBSERVATION_SCHEMA,
    )


def _put(files: LakeFiles, key: str, data: bytes) -> None:
    with files.filesystem.open_output_stream(files.path(key)) as out:
        out.write(data)


def write_hour(
    files: LakeFiles,
    hour: datetime,
    official: Sequence[OfficialValue],
    observations: Sequence[Observation] = (),
    *,
    generation: int = 1,
    bundled: bool = False,
) -> Manifest:
    """Write one hour's objects (per series, or `bundled`: one object per dataset holding
    every series, ~100 rows per row group) and its manifest last."""
    hour = hour_of(hour)
    objects: list[ManifestObject] = []
    for dataset, rows, table_of in (
        (OFFICIAL_VALUES, list(official), _official_table),
        (OBSERVATIONS, list(observations), _observation_table),
    ):
        groups: dict[str | None, list[object]] = defaultdict(list)
        for row in sorted(rows, key=lambda r: (r.reference_data_id, r.snap)):  # type: ignore[attr-defined]
            groups[None if bundled else row.reference_data_id].append(row)  # type: ignore[attr-defined]
        for series, members in groups.items():
            buffer = io.BytesIO()
            pq.write_table(table_of(members), buffer, compression="zstd", row_group_size=100)
            data = buffer.getvalue()
            key = (
                series_object_key(dataset, series, hour, generation)
                if series is not None
                else f"bundled/{hour:%Y/%m/%d/%H}/{dataset}-g{generation:04d}.parquet"
            )
            _put(files, key, data)
            objects.append(
                ManifestObject(
                    key=key,
                    dataset=dataset,
                    series=series,
                    rows=len(members),
                    bytes=len(data),
                    sha256="",
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
    _put(files, manifest_key(hour, generation), _json.encode(manifest))
    return manifest


def delete_bucket(files: LakeFiles) -> None:
    files.filesystem.delete_dir(files.bucket)
