#!/usr/bin/env python3
"""Run the local service's processes and keep them running (standard library only).

    supervise.py --child api=".venv/bin/qis api" --child worker=".venv/bin/qis worker" ...

A child that exits while no stop was asked for (whatever its exit code) is started again
after a delay that doubles from --initial-delay up to --max-delay; a child that had stayed
up for --reset-after seconds starts again from --initial-delay. Every exit and restart is
one JSON line on stderr (the services' log format), and the restart counts are printed
when the supervisor stops.

SIGTERM or SIGINT (Ctrl-C) stops: every child gets SIGTERM, those still running after
--grace seconds get SIGKILL, then the supervisor exits 0. A second SIGINT while stopping
kills the children at once. Each child runs in a process group of its own, so a Ctrl-C in
the terminal reaches only the supervisor, which then stops the children in order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

LOGGER = "qis.supervise"
EXIT_NOT_STARTED = 127  # the command could not be executed at all


def log(stream: TextIO, level: str, event: str, **fields: Any) -> None:
    """One JSON line like the services' logs (time, level, logger, event, fields)."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": LOGGER,
        "event": event,
        **fields,
    }
    stream.write(json.dumps(entry) + "\n")
    stream.flush()


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def delay(self, failures: int) -> float:
        """The wait before restart number `failures` of a run of quick exits (1, 2, ...)."""
        return min(self.initial * 2.0 ** max(failures - 1, 0), self.maximum)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0  # restarts performed
    failures: int = 0  # exits in a row, each after less than reset_after seconds up
    restart_at: float | None = None


def describe_exit(code: int) -> dict[str, Any]:
    if code < 0:
        try:
            return {"exit_code": code, "signal": signal.Signals(-code).name}
        except ValueError:
            return {"exit_code": code}
    return {"exit_code": code}


class Supervisor:
    def __init__(
        self,
        children: Sequence[Child],
        backoff: Backoff,
        grace: float,
        poll: float = 0.1,
        stream: TextIO = sys.stderr,
    ) -> None:
        self.children = list(children)
        self.backoff = backoff
        self.grace = grace
        self.poll = poll
        self.stream = stream
        self.stop_signal: str | None = None
        self.kill_now = False

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum).name
        elif signum == signal.SIGINT:
            self.kill_now = True  # a second Ctrl-C: no more waiting

    def start(self, child: Child) -> None:
        child.restart_at = None
        child.started_at = time.monotonic()
        try:
            # A process group of its own: the terminal's Ctrl-C reaches only us.
            child.process = subprocess.Popen(child.argv, stdin=subprocess.DEVNULL, process_group=0)
        except OSError as exc:
            child.process = None
            log(self.stream, "ERROR", "child could not start", child=child.name, error=str(exc))
            self._schedule_restart(child, EXIT_NOT_STARTED, 0.0)
            return
        log(self.stream, "INFO", "child started", child=child.name, pid=child.process.pid)

    def _schedule_restart(self, child: Child, code: int, uptime: float) -> None:
        if uptime >= self.backoff.reset_after:
            child.failures = 0
        child.failures += 1
        delay = self.backoff.delay(child.failures)
        child.restart_at = time.monotonic() + delay
        log(
            self.stream,
            "WARNING",
            "child exited; restarting",
            child=child.name,
            **describe_exit(code),
            uptime_seconds=round(uptime, 3),
            restart=child.restarts + 1,
            next_delay_seconds=delay,
        )

    def _check(self, child: Child, now: float) -> None:
        if child.process is not None:
            code = child.process.poll()
            if code is not None:
                child.process = None
                self._schedule_restart(child, code, now - child.started_at)
        elif child.restart_at is not None and now >= child.restart_at:
            child.restarts += 1
            self.start(child)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            for child in self.children:
                self.start(child)
            while self.stop_signal is None:
                now = time.monotonic()
                for child in self.children:
                    if self.stop_signal is None:
                        self._check(child, now)
                time.sleep(self.poll)
            log(self.stream, "INFO", "stopping children", signal=self.stop_signal)
        finally:
            self.stop_all()
        counts = {child.name: child.restarts for child in self.children}
        log(self.stream, "INFO", "supervisor stopped", restarts=counts)
        listing = ", ".join(f"{name} {count}" for name, count in counts.items())
        self.stream.write(f"supervise: restarts: {listing}\n")
        self.stream.flush()
        return 0

    def _running(self) -> list[Child]:
        return [c for c in self.children if c.process is not None and c.process.poll() is None]

    def _signal(self, child: Child, sig: signal.Signals) -> None:
        assert child.process is not None
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(child.process.pid, sig)  # the child and anything it started

    def stop_all(self) -> None:
        """SIGTERM to every child, SIGKILL to those still up after the grace period."""
        for child in self._running():
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self._running() and time.monotonic() < deadline and not self.kill_now:
            time.sleep(min(self.poll, 0.05))
        for child in self._running():
            log(
                self.stream,
                "WARNING",
                "child killed after the grace period",
                child=child.name,
                grace_seconds=self.grace,
            )
            self._signal(child, signal.SIGKILL)
        for child in self.children:
            if child.process is not None:
                code = child.process.wait()
                log(self.stream, "INFO", "child stopped", child=child.name, **describe_exit(code))
                child.process = None


def parse_child(text: str) -> Child:
    name, sep, command = text.partition("=")
    argv = shlex.split(command)
    if not sep or not name or not argv:
        raise argparse.ArgumentTypeError(f"expected NAME=COMMAND, got {text!r}")
    return Child(name=name, argv=argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--child",
        type=parse_child,
        action="append",
        required=True,
        metavar="NAME=COMMAND",
        help="a child to run (repeatable); COMMAND is split like a shell would",
    )
    parser.add_argument("--initial-delay", type=float, default=1.0, help="first restart delay (s)")
    parser.add_argument("--max-delay", type=float, default=30.0, help="restart delay cap (s)")
    parser.add_argument(
        "--reset-after",
        type=float,
        default=60.0,
        help="a child up this long (s) restarts from the initial delay again",
    )
    parser.add_argument(
        "--grace", type=float, default=30.0, help="wait (s) after SIGTERM before SIGKILL"
    )
    parser.add_argument("--poll", type=float, default=0.1, help="check children every POLL s")
    args = parser.parse_args(argv)
    names = [child.name for child in args.child]
    if len(set(names)) != len(names):
        parser.error(f"child names must differ: {names}")
    backoff = Backoff(args.initial_delay, args.max_delay, args.reset_after)
    return Supervisor(args.child, backoff, args.grace, args.poll).run()


if __name__ == "__main__":
    sys.exit(main())
