"""Progress of long commands: in-place lines on a terminal, JSON lines otherwise."""

from __future__ import annotations

import io
import json

import pytest

from app.entrypoints.progress import SILENT, Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_json_lines_when_not_a_terminal_with_throttled_updates() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("demo", steps=2, stream=out, clock=clock, json_every=10.0)

    with progress.step("load") as step:
        for second in range(25):
            clock.now = 100.0 + second
            step.update(second, 24, "s")
    with progress.step("report"):
        clock.now += 0.5

    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["step"], e["state"]) for e in events] == [
        (1, "started"),
        (1, "running"),
        (1, "running"),
        (1, "running"),
        (1, "done"),
        (2, "started"),
        (2, "done"),
    ]
    assert [e.get("done") for e in events[1:4]] == [0, 10, 20]  # one every 10 s
    assert events[2] == {
        "command": "demo",
        "step": 1,
        "steps": 2,
        "name": "load",
        "state": "running",
        "seconds": 10.0,
        "done": 10,
        "total": 24,
        "unit": "s",
    }
    assert events[4]["seconds"] == 24.0
    assert events[6] == {
        "command": "demo",
        "step": 2,
        "steps": 2,
        "name": "report",
        "state": "done",
        "seconds": 0.5,
    }


def test_a_terminal_gets_one_line_per_step_rewritten_in_place() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("qis sizing", steps=3, stream=out, tty=True, clock=clock)

    with progress.step("cache entry sizes") as step:
        clock.now += 1.0
        step.update(30, 120, "s")
        clock.now += 0.1  # within 0.2 s of the last: not drawn
        step.update(31, 120, "s")
        clock.now += 1.4

    def fail() -> None:
        with progress.step("write path"):
            clock.now += 75
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail()

    text = out.getvalue()
    assert "\x1b[K" in text
    lines = [part.split("\x1b[K")[-1] for part in text.split("\r") if part.strip("\x1b[K")]
    assert lines == [
        "qis sizing [1/3] cache entry sizes ...",
        "qis sizing [1/3] cache entry sizes ... 30/120 s (25 %) (1.0 s)",
        "qis sizing [1/3] cache entry sizes: done in 2.5 s\n",
        "qis sizing [2/3] write path ...",
        "qis sizing [2/3] write path: FAILED after 1 min 15 s\n",
    ]


def test_a_progress_without_a_stream_writes_nothing_and_steps_still_run() -> None:
    ran = []
    with SILENT.step("anything") as step:
        step.update(1, 2)
        ran.append(step.name)
    assert ran == ["anything"]
    assert not Progress("x", stream=io.StringIO()).tty  # StringIO is not a terminal


def test_a_terminal_bar_with_rate_and_eta_and_an_interrupted_step() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("ingest", stream=out, tty=True, clock=clock)

    def interrupted() -> None:
        with progress.step("prices.csv") as step:
            clock.now += 4.0
            step.update(412_000, None, "rows", percent=41.2, rate=21_480.4, eta_seconds=27.4)
            clock.now += 1.0
            step.failure = "interrupted"
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()

    lines = [part.split("\x1b[K")[-1] for part in out.getvalue().split("\r") if part.strip()]
    assert lines[1] == (
        "ingest [1] prices.csv ... [#########...............] 41 % 412,000 rows, "
        "21,480 rows/s, ETA 27.4 s (4.0 s)"
    )
    assert lines[2] == "ingest [1] prices.csv: interrupted after 5.0 s\n"


def test_json_lines_carry_the_detail_and_the_failure_state() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("ingest", stream=out, clock=clock, json_every=0)

    def interrupted() -> None:
        with progress.step("a.csv") as step:
            step.update(10, None, "rows", accepted=9, rejected=1, rate=5.0)
            step.failure = "interrupted"
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    running, ended = (json.loads(line) for line in out.getvalue().splitlines()[1:])
    assert {k: running[k] for k in ("done", "unit", "accepted", "rejected", "rate")} == {
        "done": 10,
        "unit": "rows",
        "accepted": 9,
        "rejected": 1,
        "rate": 5.0,
    }
    assert ended["state"] == "interrupted"
