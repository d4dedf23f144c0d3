from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from app.domain.quality import Quality
from app.domain.reconciliation import (
    Exclusion,
    Reconciliation,
    ReconciliationStatus,
    reconcile,
)
from app.domain.series import SeriesConfig
from app.domain.versions import (
    Change,
    OfficialValue,
    VersionDecision,
    decide_version,
    official_value,
)

from .builders import SERIES, SNAP, observation

ABC = SeriesConfig(expected_sources=("A", "B", "C"))
RECORDED = SNAP + timedelta(seconds=3)
FULL = Quality(score=1.0, completeness=1.0, timeliness=1.0, consistency=1.0, validity=1.0)


def result(
    value: float | None = 100.0,
    *,
    status: ReconciliationStatus = "official",
    used: tuple[str, ...] = ("A", "B", "C"),
    excluded: tuple[Exclusion, ...] = (),
) -> Reconciliation:
    return Reconciliation(
        value=value,
        status=status,
        method="median",
        sources_used=used,
        sources_excluded=excluded,
        quality=FULL,
        observation_ids=tuple(f"id-{s}" for s in used),
    )


def version_1(outcome: Reconciliation) -> OfficialValue:
    decision = decide_version(outcome, None, all_expected_reported=True, window_closed=False)
    return official_value(SERIES, SNAP, outcome, decision, recorded_at=RECORDED)


# --- version 1 ------------------------------------------------------------------------


def test_version_1_once_every_expected_source_reported() -> None:
    decision = decide_version(result(), None, all_expected_reported=True, window_closed=False)

    assert decision == VersionDecision(publish=True, reason="first_version", version=1)


def test_version_1_once_the_window_closed_even_with_sources_missing() -> None:
    decision = decide_version(result(), None, all_expected_reported=False, window_closed=True)

    assert decision.publish
    assert decision.version == 1
    assert decision.supersedes is None


def test_no_version_while_sources_are_missing_and_the_window_is_open() -> None:
    decision = decide_version(result(), None, all_expected_reported=False, window_closed=False)

    assert decision == VersionDecision(publish=False, reason="window_open")


def test_no_version_1_for_an_insufficient_result_even_when_the_window_closed() -> None:
    outcome = result(None, status="insufficient", used=())

    decision = decide_version(outcome, None, all_expected_reported=True, window_closed=True)

    assert decision == VersionDecision(publish=False, reason="insufficient")


def test_a_suspect_result_is_still_published() -> None:
    decision = decide_version(
        result(status="suspect"), None, all_expected_reported=False, window_closed=True
    )

    assert decision.publish


# --- later versions -------------------------------------------------------------------


def test_unchanged_result_after_version_1_publishes_nothing() -> None:
    latest = version_1(result())

    decision = decide_version(result(), latest, all_expected_reported=True, window_closed=True)

    assert decision == VersionDecision(publish=False, reason="unchanged")


@pytest.mark.parametrize(
    ("changed", "changes"),
    [
        (result(100.5), ("value",)),
        (result(status="suspect"), ("status",)),
        (result(used=("A", "B", "D")), ("sources",)),
        (result(excluded=(Exclusion(source="D", reason="outlier"),)), ("sources",)),
        (result(101.0, status="suspect", used=("A", "B")), ("value", "status", "sources")),
    ],
)
def test_a_change_of_value_status_or_sources_makes_version_n_plus_1(
    changed: Reconciliation, changes: tuple[Change, ...]
) -> None:
    latest = version_1(result(excluded=()))

    decision = decide_version(changed, latest, all_expected_reported=False, window_closed=False)

    assert decision == VersionDecision(
        publish=True, reason="revised", version=2, supersedes=1, changes=changes
    )


def test_a_changed_exclusion_reason_is_a_change_of_sources() -> None:
    stale = result(used=("A", "B"), excluded=(Exclusion(source="C", reason="stale"),))
    outlier = result(used=("A", "B"), excluded=(Exclusion(source="C", reason="outlier"),))

    decision = decide_version(
        outlier, version_1(stale), all_expected_reported=True, window_closed=True
    )

    assert decision.changes == ("sources",)


def test_revisions_keep_counting_from_the_latest_version() -> None:
    latest = msgspec.structs.replace(version_1(result()), version=7, supersedes=6)

    decision = decide_version(result(99.0), latest, all_expected_reported=True, window_closed=True)

    assert (decision.version, decision.supersedes) == (8, 7)


def test_later_versions_do_not_wait_for_the_window() -> None:
    latest = version_1(result())

    decision = decide_version(
        result(100.5), latest, all_expected_reported=False, window_closed=False
    )

    assert decision.publish


def test_insufficient_after_version_1_publishes_nothing_and_says_why() -> None:
    latest = version_1(result())
    outcome = result(None, status="insufficient", used=())

    decision = decide_version(outcome, latest, all_expected_reported=True, window_closed=True)

    assert decision == VersionDecision(publish=False, reason="insufficient_after_publication")


def test_method_or_quality_alone_is_not_a_change() -> None:
    latest = version_1(result())
    other = msgspec.structs.replace(
        result(),
        method="trimmed_mean",
        quality=msgspec.structs.replace(FULL, score=0.97, timeliness=0.97),
    )

    decision = decide_version(other, latest, all_expected_reported=True, window_closed=True)

    assert decision.reason == "unchanged"


# --- building the version -------------------------------------------------------------


def test_official_value_carries_the_result_and_the_decision() -> None:
    obs = [observation("A", 100.0), observation("B", 100.01), observation("C", 103.0)]
    outcome = reconcile(ABC, SNAP, obs, previous_value=None)
    decision = VersionDecision(publish=True, reason="revised", version=3, supersedes=2)

    paris = timezone(timedelta(hours=1))
    built = official_value(
        SERIES, SNAP.astimezone(paris), outcome, decision, recorded_at=RECORDED.astimezone(paris)
    )

    assert msgspec.json.decode(msgspec.json.encode(built)) == {
        "reference_data_id": SERIES,
        "snap": "2026-01-15T14:00:00Z",
        "version": 3,
        "value": 100.005,
        "status": "suspect",
        "method": "median",
        "sources_used": ["A", "B"],
        "sources_excluded": [{"source": "C", "reason": "outlier"}],
        "quality": {
            "score": 0.6667,
            "completeness": 1.0,
            "timeliness": 1.0,
            "consistency": 0.6667,
            "validity": 1.0,
        },
        "supersedes": 2,
        "recorded_at": "2026-01-15T14:00:03Z",
    }


def test_official_value_refuses_a_decision_that_publishes_nothing() -> None:
    with pytest.raises(ValueError, match="unchanged"):
        official_value(
            SERIES,
            SNAP,
            result(),
            VersionDecision(publish=False, reason="unchanged"),
            recorded_at=RECORDED,
        )


def test_official_value_refuses_an_insufficient_result() -> None:
    decision = VersionDecision(publish=True, reason="first_version", version=1)

    with pytest.raises(ValueError, match="insufficient"):
        official_value(
            SERIES, SNAP, result(None, status="insufficient"), decision, recorded_at=RECORDED
        )


def test_official_value_refuses_naive_timestamps() -> None:
    decision = VersionDecision(publish=True, reason="first_version", version=1)

    with pytest.raises(ValueError, match="naive"):
        official_value(SERIES, SNAP, result(), decision, recorded_at=datetime(2026, 1, 15))
    assert official_value(SERIES, SNAP, result(), decision, recorded_at=RECORDED).snap.tzinfo is UTC
