"""The backup's keys, the newest backup, and the drill's comparisons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.domain.backup import (
    AuditHead,
    backup_id,
    compare_audit_head,
    compare_counts,
    dump_key,
    lake_hour_problem,
    manifest_key,
    newest_backup_id,
)

T = datetime(2026, 12, 3, 14, 5, 9, 123456, tzinfo=UTC)


def test_keys_follow_the_snapshot_time_in_utc() -> None:
    paris = T.astimezone(timezone(timedelta(hours=1)))
    assert backup_id(paris) == "20261203T140509Z"
    assert dump_key("qis", backup_id(T)) == "postgresql/qis/20261203T140509Z/dump.pgcustom"
    assert manifest_key("qis", backup_id(T)) == "postgresql/qis/20261203T140509Z/manifest.json"


@pytest.mark.parametrize("bad", ["", "latest", "../20261203T140509Z", "20261203T140509"])
def test_a_key_needs_a_backup_id(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a backup id"):
        dump_key("qis", bad)


def test_a_backup_id_needs_a_timezone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        backup_id(T.replace(tzinfo=None))


def test_the_newest_backup_is_the_latest_with_a_manifest() -> None:
    keys = [
        "postgresql/qis/20261201T000000Z/dump.pgcustom",
        "postgresql/qis/20261201T000000Z/manifest.json",
        "postgresql/qis/20261203T000000Z/dump.pgcustom",  # cut short: no manifest
        "postgresql/qis/20261202T000000Z/manifest.json",
        "postgresql/qis/notanid/manifest.json",
        "postgresql/other/20261209T000000Z/manifest.json",
    ]
    assert newest_backup_id("qis", keys) == "20261202T000000Z"
    assert newest_backup_id("qis", keys[:1]) is None
    assert newest_backup_id("other", keys) == "20261209T000000Z"


def test_counts_differences_are_named_per_table() -> None:
    assert compare_counts({"public.a": 3}, {"public.a": 3}) == []
    assert compare_counts({"public.a": 3, "public.b": 1}, {"public.a": 2, "public.c": 0}) == [
        "public.a: 2 rows restored, the manifest says 3",
        "public.b: in the manifest (1 rows), missing after restore",
        "public.c: restored with 0 rows, not in the manifest",
    ]


def test_the_audit_head_must_match() -> None:
    head = AuditHead(seq=9, hash="ab", at=T)
    assert compare_audit_head(head, head) is None
    assert compare_audit_head(None, None) is None
    assert compare_audit_head(head, None) == (
        "the restored trail ends at an empty trail, the backup's at seq 9 hash ab"
    )


def test_a_lake_hour_is_equal_ahead_or_lost() -> None:
    hour = datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert lake_hour_problem("observations", hour, 10, 10) == ""
    assert lake_hour_problem("observations", hour, 11, 10) == (
        "ahead: observations 2026-11-30T09h: 11 rows, the lake manifest 10"
    )
    assert lake_hour_problem("audit", hour, 9, 10) == (
        "lost: audit 2026-11-30T09h: 9 rows, the lake manifest 10"
    )
