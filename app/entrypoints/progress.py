"""Progress of a long command, on stderr: a line per step on a terminal, JSON otherwise.

    progress = Progress("sizing", steps=4)
    with progress.step("cache entry sizes (Redis)"):
        ...
    with progress.step("load") as step:
        step.update(done=30, total=660, unit="s")

On a terminal each step is one line, `qis sizing [1/4] cache entry sizes (Redis) ...`,
rewritten in place by `update` (at most every `tty_every` seconds) and ended with its
duration or `FAILED`. Otherwise (a pipe, a log file, CI) every event is one JSON object
per line, `{"command": "sizing", "step": 1, "steps": 4, "name": ..., "state":
"started"|"running"|"done"|"failed", ...}` (or the step's own `failure` state, e.g.
"interrupted"), with `update`s at most every `json_every`
seconds. stdout stays for the command's results.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class Step:
    """One step in progress; `update` reports how far it is."""

    def __init__(self, progress: Progress, number: int, name: str) -> None:
        self._progress, self.number, self.name = progress, number, name
        self.started = progress.clock()
        self._last_update = -float("inf")
        # The state an exception ends the step in; "interrupted" for a Ctrl-C, say.
        self.failure = "failed"

    def update(
        self, done: float, total: float | None = None, unit: str = "", **detail: Any
    ) -> None:
        """How far the step is; `detail` goes into the JSON line as it is. On a terminal,
        `percent` draws a bar, `rate` (`unit`/s) and `eta_seconds` are shown too."""
        now = self._progress.clock()
        every = self._progress.tty_every if self._progress.tty else self._progress.json_every
        if now - self._last_update < every:
            return
        self._last_update = now
        self._progress.emit(self, "running", now, done=done, total=total, unit=unit, **detail)


class Progress:
    """The steps of one command; see the module docstring. `stream=None`: silent."""

    def __init__(
        self,
        command: str,
        steps: int | None = None,
        *,
        stream: TextIO | None = sys.stderr,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty_every: float = 0.2,
        json_every: float = 10.0,
    ) -> None:
        self.command, self.steps, self.stream, self.clock = command, steps, stream, clock
        self.tty = bool(stream is not None and stream.isatty()) if tty is None else tty
        self.tty_every, self.json_every = tty_every, json_every
        self._count = 0

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        self._count += 1
        step = Step(self, self._count, name)
        self.emit(step, "started", step.started)
        try:
            yield step
        except BaseException:
            self.emit(step, step.failure, self.clock())
            raise
        self.emit(step, "done", self.clock())

    def emit(self, step: Step, state: str, now: float, **detail: Any) -> None:
        if self.stream is None:
            return
        seconds = round(now - step.started, 3)
        if not self.tty:
            event: dict[str, Any] = {"command": self.command, "step": step.number}
            if self.steps is not None:
                event["steps"] = self.steps
            event |= {"name": step.name, "state": state, "seconds": seconds}
            event |= {k: v for k, v in detail.items() if v not in (None, "")}
            self.stream.write(json.dumps(event) + "\n")
        else:
            of = f"/{self.steps}" if self.steps is not None else ""
            head = f"\r\x1b[K{self.command} [{step.number}{of}] {step.name}"
            if state == "started":
                self.stream.write(f"{head} ...")
            elif state == "running":
                self.stream.write(f"{head} ... {_amount(**detail)} ({_duration(seconds)})")
            elif state == "done":
                self.stream.write(f"{head}: done in {_duration(seconds)}\n")
            elif state == "failed":
                self.stream.write(f"{head}: FAILED after {_duration(seconds)}\n")
            else:
                self.stream.write(f"{head}: {state} after {_duration(seconds)}\n")
        self.stream.flush()


SILENT = Progress("", stream=None)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


BAR_WIDTH = 24


def _amount(
    done: float,
    total: float | None,
    unit: str,
    percent: float | None = None,
    rate: float | None = None,
    eta_seconds: float | None = None,
    **_: Any,
) -> str:
    suffix = f" {unit}" if unit else ""
    if total:
        text = f"{done:g}/{total:g}{suffix} ({100 * done / total:.0f} %)"
    else:
        text = f"{int(done):,}{suffix}" if float(done).is_integer() else f"{done:g}{suffix}"
    if percent is not None:
        filled = int(BAR_WIDTH * min(max(percent, 0.0), 100.0) / 100)  # full only at 100 %
        text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:.0f} % {text}"
    if rate is not None:
        text += f", {rate:,.0f}{suffix}/s"
    if eta_seconds is not None:
        text += f", ETA {_duration(eta_seconds)}"
    return text
