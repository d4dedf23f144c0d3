"""The life of one (series, snap): the state the pipeline keeps for it.

- `open`: no version yet and its collection window has not closed;
- `published`: it has at least one version (it stays published: versions are never
  withdrawn, even when later data leaves it without enough sources);
- `insufficient`: its window closed without enough usable sources for a first version;
- `failed`: closing its window failed and the scheduler set it aside (it is no longer
  due); new observations for the snap reconcile it again, which gives it one of the
  states above.
"""

from __future__ import annotations

from typing import Literal

SnapStateName = Literal["open", "published", "insufficient", "failed"]


def snap_state_after(
    *, publishes_now: bool, had_version: bool, window_closed: bool
) -> SnapStateName:
    """The state of a snap after one reconciliation."""
    if publishes_now or had_version:
        return "published"
    if window_closed:
        return "insufficient"
    return "open"
