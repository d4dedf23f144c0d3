"""`qis api` as several processes sharing one listening socket (`QIS_API__PROCESSES` > 1).

uvicorn's own supervisor (`uvicorn.supervisors.Multiprocess`) binds the socket in this
(the parent) process and starts each api process with multiprocessing's *spawn* method: a
fresh interpreter that inherits no thread, no connection and no telemetry exporter of
the parent. Each api process builds the whole application itself in `create_process_app`
(settings from the environment, its own telemetry providers and exporter threads, pools,
producer, Redis client, L1 cache and publication listener), so:

- every process LISTENs for new versions on a connection of its own and drops its own
  L1 entries (docs/cache.md);
- every process exports its metrics and spans under its own resource
  (`service.instance.id` `<host>:<pid>`, `app.telemetry.setup`);
- rate-limit buckets are in Redis, shared by every process (each takes its own leases).

The parent serves nothing and sets up no telemetry. It starts a process again when one
dies, rolls the processes on SIGHUP, and on SIGTERM or SIGINT sends SIGTERM to each and
waits for it: each drains its requests in flight (up to `QIS_API__SHUTDOWN_GRACE_SECONDS`),
closes its resources, flushes its telemetry and exits 0. The parent then exits 0, or with
the exit code of an api process that did not (3: one could not start, after printing why).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from app.entrypoints.unreachable import ASGIApp, Unreachable, quiet_startup_failure
from app.settings import Settings, load_settings

_log = logging.getLogger("qis.api.processes")

# The import string uvicorn's api processes build their application from.
APP_FACTORY = "app.entrypoints.api_processes:create_process_app"


def server_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings every api process serves with, one process or several."""
    return {
        "host": settings.api.host,
        "port": settings.api.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": int(settings.api.shutdown_grace_seconds),
    }


class ProcessConfig(uvicorn.Config):
    """uvicorn's configuration, which also prepares each api process it arrives in.

    uvicorn calls `configure_logging` first thing in every process it spawns (and once in
    the parent, from `__init__`)."""

    def configure_logging(self) -> None:
        super().configure_logging()
        if multiprocessing.parent_process() is not None:
            _prepare_api_process()


def _prepare_api_process() -> None:
    from app.telemetry.logging import configure_logging

    configure_logging(load_settings(os.environ).telemetry.log_level)
    signal.signal(signal.SIGTERM, _exit_zero)


def _exit_zero(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's server: end the process with exit code 0.

    uvicorn's server handles SIGTERM itself (drain, lifespan shutdown), then raises the
    signal again under the handler it found, to end the process "by the signal". With
    this handler the drained process exits 0, as `qis api` does with one process; a
    SIGTERM before the server started ends it at once, also with 0.
    """
    sys.exit(0)


def create_process_app() -> ASGIApp:
    """The application of one api process (uvicorn's factory, called in that process)."""
    from app.entrypoints.api import create_app
    from app.telemetry.setup import setup_telemetry

    settings = load_settings(os.environ)  # the parent checked them before it spawned us
    telemetry = setup_telemetry(settings.telemetry, "api")
    app = create_app(settings, telemetry)
    # Shutdown hooks run after the lifespan closed the resources: their spans are flushed.
    app.on_shutdown.append(telemetry.shutdown)
    return quiet_startup_failure(app, _print_unreachable)


def _print_unreachable(exc: Unreachable) -> None:
    sys.stderr.write(f"qis: {exc}\n")
    sys.stderr.flush()


def serve(settings: Settings) -> int:
    """Run `settings.api.processes` api processes until SIGTERM; the exit code."""
    config = ProcessConfig(
        APP_FACTORY, factory=True, workers=settings.api.processes, **server_options(settings)
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    code = 0
    for process in supervisor.processes:
        exit_code = process.exitcode
        _log.info("api process exited", extra={"pid": process.pid, "exit_code": exit_code})
        if exit_code and not code:
            code = exit_code if exit_code > 0 else 1
    return code
