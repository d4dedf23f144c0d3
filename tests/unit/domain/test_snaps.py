"""The snap state machine (app/domain/snaps.py)."""

from __future__ import annotations

import pytest

from app.domain.snaps import SnapStateName, snap_state_after


@pytest.mark.parametrize(
    ("publishes_now", "had_version", "window_closed", "state"),
    [
        (True, False, False, "published"),  # a first version inside the window
        (True, True, True, "published"),  # a correction after the window
        (False, True, True, "published"),  # versions are never withdrawn
        (False, True, False, "published"),
        (False, False, True, "insufficient"),  # window closed without a version
        (False, False, False, "open"),  # still collecting
    ],
)
def test_state_after_a_reconciliation(
    publishes_now: bool, had_version: bool, window_closed: bool, state: SnapStateName
) -> None:
    assert (
        snap_state_after(
            publishes_now=publishes_now, had_version=had_version, window_closed=window_closed
        )
        == state
    )
