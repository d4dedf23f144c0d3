"""scripts/supervise.py (what `make run` runs the services under), with dummy children.

The supervisor runs as a real process; its JSON log lines on stderr are what the tests
look at. Delays are short and every wait is bounded; nothing asserts on durations.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "supervise.py"
PY = sys.executable
WAIT_SECONDS = 30.0


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("supervise", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["supervise"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _python(code: str) -> str:
    return f"{shlex.quote(PY)} -c {shlex.quote(code)}"


class Supervised:
    """A running supervisor and the JSON events it has logged so far."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [PY, str(SCRIPT), *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.plain: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                if line.startswith("{"):
                    self.events.append(json.loads(line))
                else:
                    self.plain.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        with self._changed:
            while not predicate(self.events):
                left = deadline - time.monotonic()
                assert left > 0, f"not seen within {WAIT_SECONDS} s; events: {self.events}"
                self._changed.wait(left)

    def named(self, event: str, child: str | None = None) -> list[dict[str, Any]]:
        with self._changed:
            return [
                e
                for e in self.events
                if e["event"] == event and (child is None or e.get("child") == child)
            ]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(WAIT_SECONDS)
        self._reader.join(WAIT_SECONDS)
        return code

    def close(self) -> None:
        """Kill the supervisor if a test left it running; release the pipe."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_SECONDS)
        self._reader.join(WAIT_SECONDS)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def supervised() -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(*args: str) -> Supervised:
        run = Supervised(*args)
        started.append(run)
        return run

    yield start
    for run in started:
        run.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_backoff_doubles_to_its_cap() -> None:
    backoff = _module().Backoff(initial=1.0, maximum=30.0, reset_after=60.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_crashing_child_is_restarted_with_growing_delays_and_counted(
    supervised: Callable[..., Supervised],
) -> None:
    run = supervised(
        "--initial-delay=0.05",
        "--max-delay=0.2",
        "--reset-after=60",
        "--poll=0.02",
        "--child",
        "crash=" + _python("import sys; sys.exit(3)"),
        "--child",
        "steady=" + _python("import time; time.sleep(60)"),
    )
    run.wait_for(lambda events: sum(e["event"] == "child exited; restarting" for e in events) >= 5)
    assert run.stop() == 0
    exits = run.named("child exited; restarting", "crash")
    assert [e["exit_code"] for e in exits] == [3] * len(exits)
    assert [e["restart"] for e in exits] == list(range(1, len(exits) + 1))
    delays = [e["next_delay_seconds"] for e in exits]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.2]
    assert set(delays[4:]) <= {0.2}
    # counted: one start per restart performed, and the final count says so
    restarted = len(run.named("child started", "crash")) - 1
    assert restarted >= 4
    (stopped,) = run.named("supervisor stopped")
    assert stopped["restarts"] == {"crash": restarted, "steady": 0}
    assert run.plain[-1] == f"supervise: restarts: crash {restarted}, steady 0"
    assert run.named("child exited; restarting", "steady") == []


def test_a_child_that_stayed_up_restarts_from_the_initial_delay(
    supervised: Callable[..., Supervised],
) -> None:
    run = supervised(
        "--initial-delay=0.05",
        "--max-delay=10",
        "--reset-after=0.1",
        "--poll=0.02",
        "--child",
        "flaky=" + _python("import sys, time; time.sleep(0.3); sys.exit(1)"),
    )
    run.wait_for(lambda events: sum(e["event"] == "child exited; restarting" for e in events) >= 3)
    assert run.stop() == 0
    exits = run.named("child exited; restarting", "flaky")
    assert all(e["uptime_seconds"] >= 0.1 for e in exits)
    assert {e["next_delay_seconds"] for e in exits} == {0.05}


def _wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_child_and_the_supervisor_exits_0(
    supervised: Callable[..., Supervised], sig: signal.Signals, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    sleeper = "sleeper=" + _python("import time; time.sleep(60)")
    graceful = "graceful=" + _python(
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)"
    )
    run = supervised("--grace=20", "--child", sleeper, "--child", graceful)
    _wait_for_file(ready)
    run.wait_for(lambda events: sum(e["event"] == "child started" for e in events) == 2)
    pids = {e["child"]: e["pid"] for e in run.named("child started")}
    assert run.stop(sig) == 0
    stopped = {e["child"]: e for e in run.named("child stopped")}
    assert stopped["sleeper"]["signal"] == "SIGTERM"
    assert stopped["graceful"]["exit_code"] == 0
    assert run.named("child exited; restarting") == []
    assert run.named("child killed after the grace period") == []
    assert run.named("stopping children")[0]["signal"] == sig.name
    assert all(_gone(pid) for pid in pids.values())


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(
    supervised: Callable[..., Supervised], tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    stubborn = "stubborn=" + _python(
        "import pathlib, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)"
    )
    run = supervised("--grace=0.5", "--child", stubborn)
    _wait_for_file(ready)
    run.wait_for(lambda events: any(e["event"] == "child started" for e in events))
    (started,) = run.named("child started", "stubborn")
    assert run.stop() == 0
    (killed,) = run.named("child killed after the grace period", "stubborn")
    assert killed["grace_seconds"] == 0.5
    (stopped,) = run.named("child stopped", "stubborn")
    assert stopped["signal"] == "SIGKILL"
    assert _gone(started["pid"])


def test_a_command_that_cannot_start_is_retried_like_a_crash(
    supervised: Callable[..., Supervised], tmp_path: Path
) -> None:
    run = supervised(
        "--initial-delay=0.05",
        "--poll=0.02",
        "--child",
        f"missing={tmp_path / 'no-such-program'}",
    )
    run.wait_for(lambda events: sum(e["event"] == "child exited; restarting" for e in events) >= 2)
    assert run.stop() == 0
    assert run.named("child could not start", "missing")
    exits = run.named("child exited; restarting", "missing")
    assert {e["exit_code"] for e in exits} == {127}


def test_bad_arguments_are_refused() -> None:
    for args in (["--child", "noequals"], ["--child", "a=x", "--child", "a=y"], []):
        done = subprocess.run(
            [PY, str(SCRIPT), *args], capture_output=True, text=True, timeout=WAIT_SECONDS
        )
        assert done.returncode == 2, args
        assert "usage:" in done.stderr
