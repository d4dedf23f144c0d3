"""Database backups' rules: where a backup lives, what its manifest says, what a restore
must show to pass the drill. Pure: no I/O; `qis backup` and `qis restore-drill`
(app/entrypoints/backup.py) use these.

A backup is a logical dump (`pg_dump -Fc`) of one database, taken from one exported
snapshot, with a manifest next to it (docs/backup.md). Keys, in the backup bucket:

- `postgresql/<database>/<backup id>/dump.pgcustom` : the dump (PostgreSQL custom format)
- `postgresql/<database>/<backup id>/manifest.json` : `BackupManifest`, written last

The backup id is the snapshot's UTC time, `yyyymmddThhmmssZ`, so ids sort by time and the
newest backup is the greatest id whose manifest exists (a backup cut short has none).
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

__all__ = [
    "BACKUP_FORMAT",
    "DUMP_NAME",
    "MANIFEST_NAME",
    "PREFIX",
    "AuditHead",
    "BackupManifest",
    "DumpObject",
    "backup_id",
    "backup_prefix",
    "compare_audit_head",
    "compare_counts",
    "database_prefix",
    "dump_key",
    "lake_hour_problem",
    "manifest_key",
    "newest_backup_id",
]

PREFIX = "postgresql/"
DUMP_NAME = "dump.pgcustom"
MANIFEST_NAME = "manifest.json"
BACKUP_FORMAT = "qis-backup/1"
_ID_FORMAT = "%Y%m%dT%H%M%SZ"


def backup_id(snapshot_at: datetime) -> str:
    """The id of a backup whose snapshot was taken at `snapshot_at` (timezone-aware)."""
    if snapshot_at.tzinfo is None:
        raise ValueError("a backup id needs a timezone-aware time")
    return snapshot_at.astimezone(UTC).strftime(_ID_FORMAT)


def _check_id(backup: str) -> str:
    try:
        datetime.strptime(backup, _ID_FORMAT)
    except ValueError:
        raise ValueError(f"{backup!r} is not a backup id (yyyymmddThhmmssZ)") from None
    return backup


def database_prefix(database: str) -> str:
    if not database or "/" in database:
        raise ValueError(f"{database!r} is not a database name")
    return f"{PREFIX}{database}/"


def backup_prefix(database: str, backup: str) -> str:
    return f"{database_prefix(database)}{_check_id(backup)}/"


def dump_key(database: str, backup: str) -> str:
    return backup_prefix(database, backup) + DUMP_NAME


def manifest_key(database: str, backup: str) -> str:
    return backup_prefix(database, backup) + MANIFEST_NAME


def newest_backup_id(database: str, keys: list[str]) -> str | None:
    """The newest backup among the bucket's `keys` under the database's prefix: the
    greatest id that has a manifest (None: no complete backup)."""
    prefix = database_prefix(database)
    ids = []
    for key in keys:
        if not key.startswith(prefix) or not key.endswith("/" + MANIFEST_NAME):
            continue
        backup = key[len(prefix) : -len(MANIFEST_NAME) - 1]
        try:
            ids.append(_check_id(backup))
        except ValueError:
            continue
    return max(ids, default=None)


class DumpObject(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    bytes: int
    sha256: str  # of the object's bytes, hex


class AuditHead(msgspec.Struct, frozen=True, kw_only=True):
    """The newest audit record: the end of the hash chain the backup holds."""

    seq: int
    hash: str
    at: datetime


class BackupManifest(msgspec.Struct, frozen=True, kw_only=True):
    format: str = BACKUP_FORMAT
    backup_id: str
    database: str
    method: str  # the command that made the dump, e.g. "pg_dump -Fc"
    server_version: str
    dump_tool_version: str
    # The recovery point: the database's time of the snapshot the dump and every figure
    # below were read from (one exported snapshot, so they agree with each other).
    snapshot_at: datetime
    started_at: datetime
    finished_at: datetime
    dump: DumpObject
    migration_version: int  # highest applied migration; 0: none
    tables: dict[str, int]  # "schema.table" -> rows
    audit: AuditHead | None  # None: an empty trail


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """What differs between the manifest's row counts and the restored database's, in
    words (empty: equal)."""
    problems = []
    for table in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(table), actual.get(table)
        if want is None:
            problems.append(f"{table}: restored with {got} rows, not in the manifest")
        elif got is None:
            problems.append(f"{table}: in the manifest ({want} rows), missing after restore")
        elif want != got:
            problems.append(f"{table}: {got} rows restored, the manifest says {want}")
    return problems


def compare_audit_head(expected: AuditHead | None, actual: AuditHead | None) -> str | None:
    """Why the restored trail does not end where the backup's did (None: it does)."""
    if expected == actual:
        return None

    def show(head: AuditHead | None) -> str:
        return "an empty trail" if head is None else f"seq {head.seq} hash {head.hash}"

    return f"the restored trail ends at {show(actual)}, the backup's at {show(expected)}"


def lake_hour_problem(dataset: str, hour: datetime, database_rows: int, lake_rows: int) -> str:
    """How an archived hour's rows in the restored database compare with its lake
    manifest: "" equal; "ahead: ..." the database holds rows the lake has not archived
    yet (a late correction, archived as the hour's next generation); "lost: ..." rows of
    the manifest are missing from the database."""
    label = f"{dataset} {hour:%Y-%m-%dT%H}h"
    if database_rows == lake_rows:
        return ""
    if database_rows > lake_rows:
        return f"ahead: {label}: {database_rows} rows, the lake manifest {lake_rows}"
    return f"lost: {label}: {database_rows} rows, the lake manifest {lake_rows}"
