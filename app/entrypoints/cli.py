"""`qis`: the command line entry points (api, worker, scheduler, db migrate, ...)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime

import asyncpg
from aiokafka.errors import KafkaError

from app.entrypoints.unreachable import (
    EXIT_UNREACHABLE,
    Unreachable,
    kafka,
    postgres,
    quiet_startup_failure,
)
from app.settings import Settings, SettingsError, load_settings

_log = logging.getLogger("qis.cli")


async def _until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)`; SIGTERM or SIGINT sets `stop` so it can finish cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


SHUTDOWN_STEP_SECONDS = 10.0


async def _bounded(step: Awaitable[None], what: str) -> bool:
    """One shutdown step, given up after SHUTDOWN_STEP_SECONDS (False when it was): with
    the broker or the database gone, aiokafka's stop (flushing to an unreachable broker)
    or a pool close can wait forever, and a process that ignores SIGTERM gets SIGKILLed
    mid-write."""
    try:
        await asyncio.wait_for(step, SHUTDOWN_STEP_SECONDS)
    except (TimeoutError, OSError, asyncpg.PostgresError, KafkaError) as exc:
        _log.warning("shutdown step abandoned", extra={"step": what, "error": repr(exc)})
        return False
    return True


async def _close_pool(pool: asyncpg.Pool) -> None:
    if not await _bounded(pool.close(), "pool"):
        pool.terminate()


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown, which kills the process
        before `cmd_api` can flush telemetry and exit 0; forget the signal once handled."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    return GracefulServer


def cmd_api(settings: Settings, _: argparse.Namespace) -> int:
    import uvicorn

    from app.entrypoints.api import create_app
    from app.entrypoints.api_processes import serve, server_options
    from app.telemetry.setup import setup_telemetry

    if settings.api.processes > 1:  # each process sets up its own telemetry
        return serve(settings)
    telemetry = setup_telemetry(settings.telemetry, "api")
    # A dependency that does not answer at startup ends in one line (`main`), not in the
    # server's log of the lifespan's traceback.
    unreachable: list[Unreachable] = []
    config = uvicorn.Config(
        quiet_startup_failure(create_app(settings, telemetry), unreachable.append),
        **server_options(settings),
    )
    # uvicorn handles SIGTERM: it stops accepting, lets requests in flight finish (bounded),
    # then runs the lifespan shutdown, which flushes and closes the producer.
    try:
        _graceful_server_class()(config).run()
    except SystemExit:
        if unreachable:  # uvicorn exits when the lifespan's startup failed
            raise unreachable[0] from None
        raise
    finally:
        telemetry.shutdown()  # flush the last spans and metrics
    return 0


def cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    from app.adapters.kafka import new_consumer, new_producer
    from app.adapters.postgres.pool import open_pool
    from app.entrypoints.worker import build_consumer
    from app.telemetry.setup import setup_telemetry

    telemetry = setup_telemetry(settings.telemetry, "worker")

    async def main(stop: asyncio.Event) -> None:
        pool = await postgres(
            open_pool(settings.db.writer_dsn, settings.db), settings.db.writer_dsn
        )
        producer = new_producer(settings.kafka)
        consumer = new_consumer(settings.kafka, settings.worker.group_id, "qis-worker")
        try:
            await kafka(producer.start(), settings.kafka.bootstrap_servers)
            await kafka(consumer.start(), settings.kafka.bootstrap_servers)
            worker = build_consumer(settings, pool, consumer, producer, metrics=telemetry.metrics)
            _log.info("worker started", extra={"owner": worker.owner})
            await worker.run(stop)
            _log.info("worker stopping", extra={"stored": worker.counters.stored})
        finally:
            # leaves the group so partitions move at once
            await _bounded(consumer.stop(), "consumer")
            await _bounded(producer.stop(), "producer")
            await _close_pool(pool)

    try:
        asyncio.run(_until_signal(main))
    finally:
        telemetry.shutdown()
    return 0


def cmd_scheduler(settings: Settings, _: argparse.Namespace) -> int:
    from app.adapters.kafka import new_producer
    from app.adapters.postgres.pool import open_pool
    from app.entrypoints.scheduler import build_scheduler
    from app.telemetry.setup import setup_telemetry

    telemetry = setup_telemetry(settings.telemetry, "scheduler")

    async def main(stop: asyncio.Event) -> None:
        pool = await postgres(
            open_pool(settings.db.writer_dsn, settings.db), settings.db.writer_dsn
        )
        producer = new_producer(settings.kafka)
        try:
            await kafka(producer.start(), settings.kafka.bootstrap_servers)
            scheduler = build_scheduler(settings, pool, producer, metrics=telemetry.metrics)
            _log.info("scheduler started")
            await scheduler.run(stop)
        finally:
            await _bounded(producer.stop(), "producer")
            await _close_pool(pool)
        _log.info("scheduler stopped")

    try:
        asyncio.run(_until_signal(main))
    finally:
        telemetry.shutdown()
    return 0


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from app.adapters.postgres.audit import stream_records
    from app.adapters.postgres.partitions import latest_checkpoint
    from app.adapters.postgres.pool import connect
    from app.domain.audit import GENESIS_HASH
    from app.services.audit import verify_audit_trail

    async def main() -> int:
        conn = await postgres(connect(settings.db.writer_dsn, settings.db), settings.db.writer_dsn)
        try:
            # Records dropped by retention are in the lake; the chain in the database
            # continues from the checkpoint of the last one (a copy has none of its own).
            checkpoint = await latest_checkpoint(conn) if args.table == "audit_log" else None
            after, start = (0, GENESIS_HASH)
            if checkpoint is not None:
                after, start = checkpoint.seq, checkpoint.hash
            result = await verify_audit_trail(
                stream_records(conn, table=args.table, after_seq=after), start_hash=start
            )
        finally:
            await conn.close()
        if result.ok:
            since = (
                ""
                if checkpoint is None
                else (
                    f" after the archived checkpoint at seq {checkpoint.seq}"
                    f" ({checkpoint.manifest_key})"
                )
            )
            print(f"OK: {result.records} audit record(s){since}, chain intact")
            return 0
        print(
            f"BROKEN at seq {result.broken_seq} (after {result.records} intact record(s)): "
            f"{result.reason}\n  expected {result.expected}\n  stored   {result.stored}"
        )
        return 1

    return asyncio.run(main())


def cmd_db_migrate(settings: Settings, _: argparse.Namespace) -> int:
    from app.adapters.postgres.migrate import bundled_migrations, migrate
    from app.adapters.postgres.partitions import ensure_partitions
    from app.adapters.postgres.pool import connect

    async def main() -> None:
        conn = await postgres(connect(settings.db.writer_dsn, settings.db), settings.db.writer_dsn)
        try:
            applied = await migrate(conn, bundled_migrations())
            created = await ensure_partitions(
                conn, datetime.now(UTC).date(), settings.retention.partitions_ahead_days
            )
        finally:
            await conn.close()
        names = [f"{m.version:04d}_{m.name}" for m in applied]
        _log.info("migrations applied", extra={"applied": names, "partitions_created": created})
        print(f"applied {len(names)} migration(s): {', '.join(names) or 'none, up to date'}")
        print(f"day partitions created ahead: {created}")

    asyncio.run(main())
    return 0


def cmd_kafka_topics(settings: Settings, _: argparse.Namespace) -> int:
    from app.adapters.kafka import ensure_topics, topic_partitions

    created = asyncio.run(kafka(ensure_topics(settings.kafka), settings.kafka.bootstrap_servers))
    for name, partitions in topic_partitions(settings.kafka).items():
        state = "created" if name in created else "exists"
        print(f"{name}\t{partitions} partitions\t{state}")
    return 0


def cmd_dev_issuer(_: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.entrypoints.dev_issuer import serve

    serve(args.host, args.port, Path(args.dir), args.url or None)
    return 0


def cmd_dev_token(settings: Settings, args: argparse.Namespace) -> int:
    import json
    import urllib.error
    from pathlib import Path

    from app.entrypoints.dev_issuer import request_token

    secret = args.secret
    if not secret:
        clients_file = Path(args.dir) / "clients.json"
        try:
            clients = json.loads(clients_file.read_text())
            secret = clients[args.client_id]["client_secret"]
        except (OSError, ValueError, KeyError):
            print(
                f"qis: no secret of {args.client_id} in {clients_file} (start `qis dev issuer` "
                "or `make run` first, or pass --secret)",
                file=sys.stderr,
            )
            return 2
    issuer = args.issuer or settings.auth.issuer
    try:
        document = request_token(issuer, args.client_id, secret, args.scope)
    except urllib.error.HTTPError as exc:
        print(f"qis: {issuer} refused: {exc.code} {exc.read()[:200].decode()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"qis: cannot reach the issuer at {issuer} ({exc})", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(document["access_token"])
    return 0


def _add_dev(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.entrypoints.dev_issuer import DEFAULT_CLIENTS, DEFAULT_DIR, DEFAULT_PORT

    dev = sub.add_parser("dev", help="local development: token issuer, tokens").add_subparsers(
        dest="dev", required=True
    )
    issuer = dev.add_parser("issuer", help="serve the local OAuth2 issuer (Cognito's tokens)")
    issuer.add_argument("--host", default="127.0.0.1")
    issuer.add_argument("--port", type=int, default=DEFAULT_PORT)
    issuer.add_argument("--dir", default=str(DEFAULT_DIR), help="key and app clients")
    issuer.add_argument("--url", default="", help="the issuer URL (default http://HOST:PORT)")
    issuer.set_defaults(run=cmd_dev_issuer)
    token = dev.add_parser("token", help="print an access token (client credentials)")
    token.add_argument(
        "--scope", action="append", default=[], help="qis/ingest, qis/read, qis/admin (repeat)"
    )
    token.add_argument(
        "--client-id", default="qis-local-admin", help=f"one of {', '.join(DEFAULT_CLIENTS)}"
    )
    token.add_argument("--secret", default="", help="default: from DIR/clients.json")
    token.add_argument("--dir", default=str(DEFAULT_DIR))
    token.add_argument(
        "--issuer", default="", help="token endpoint base (default QIS_AUTH__ISSUER)"
    )
    token.set_defaults(run=cmd_dev_token)


# The tools `qis` also runs, with their help line and the module whose `register(sub)`
# adds their commands. Their code lives outside app/ and is imported only when one of
# them is the command, so the service's commands never load it (nor its dependencies).
TOOLS: dict[str, tuple[str, str]] = {
    "dashboards": ("CloudWatch dashboards: generate, deploy, render offline", "dashboards.cli"),
    "alarms": ("CloudWatch alarms: generate, deploy, evaluate offline, test", "dashboards.cli"),
    "sizing": (
        "check the ElastiCache and Aurora sizing against measured unit costs",
        "benchmarks.sizing.cli",
    ),
}
# Imported only by the tools; installed by the `tools` extra (pyproject.toml).
TOOLS_EXTRA = "tools"
TOOLS_EXTRA_MODULES = frozenset({"matplotlib", "yaml", "boto3", "botocore"})


def _add_tools(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], argv: Sequence[str]
) -> None:
    """The tool named by `argv[0]` with all its options; the others as one-line entries of
    `qis --help` that hand their arguments to `build_parser([tool, ...])` when run."""
    command = argv[0] if argv else None
    if command in TOOLS:
        importlib.import_module(TOOLS[command][1]).register(sub)
    for name, (help_text, _module) in TOOLS.items():
        if name not in sub.choices:
            entry = sub.add_parser(name, help=help_text)
            entry.add_argument("arguments", nargs=argparse.REMAINDER)
            entry.set_defaults(run=_run_tool, tool=name)


def _run_tool(settings: Settings, args: argparse.Namespace) -> int:
    tool_args = build_parser([args.tool, *args.arguments]).parse_args([args.tool, *args.arguments])
    result: int = tool_args.run(settings, tool_args)
    return result


def _missing_tool_dependency(command: str, exc: ModuleNotFoundError) -> str | None:
    """One line naming what a tool command lacks, or None if `exc` is something else."""
    module = (exc.name or "").split(".")[0]
    if module in TOOLS_EXTRA_MODULES:
        return (
            f"qis {command}: needs the optional '{TOOLS_EXTRA}' dependencies (no module "
            f"{module!r}); install them with `uv sync --extra {TOOLS_EXTRA}` or "
            f"`pip install 'qis-data-management[{TOOLS_EXTRA}]'`"
        )
    if module in {spec.split(".")[0] for _help, spec in TOOLS.values()}:
        return (
            f"qis {command}: runs from a source checkout of the repository (no module {module!r})"
        )
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    from app.entrypoints.cli_help import annotate, version

    parser = argparse.ArgumentParser(prog="qis", description=__doc__)
    parser.add_argument("--version", action="version", version=f"qis {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API").set_defaults(run=cmd_api)
    sub.add_parser("worker", help="consume observations into PostgreSQL").set_defaults(
        run=cmd_worker
    )
    sub.add_parser("scheduler", help="close snap windows, relay the outbox").set_defaults(
        run=cmd_scheduler
    )
    db = sub.add_parser("db", help="database commands").add_subparsers(dest="db", required=True)
    db.add_parser("migrate", help="apply pending SQL migrations").set_defaults(run=cmd_db_migrate)
    kafka = sub.add_parser("kafka", help="Kafka commands").add_subparsers(
        dest="kafka", required=True
    )
    kafka.add_parser("topics", help="create missing topics").set_defaults(run=cmd_kafka_topics)
    audit = sub.add_parser("audit", help="audit trail commands").add_subparsers(
        dest="audit", required=True
    )
    verify = audit.add_parser("verify", help="recompute the hash chain; exit 1 when broken")
    verify.add_argument(
        "--table", default="audit_log", help="verify a copy instead (e.g. a restored backup)"
    )
    verify.set_defaults(run=cmd_audit_verify)
    _add_dev(sub)
    _add_tools(sub, argv)
    from app.entrypoints import (
        backup,
        dlq,
        events,
        ingest,
        lake,
        lake_query,
        retention,
        timestream,
    )

    dlq.register(sub)
    ingest.register(sub)
    lake_commands = lake.register(sub)
    lake_query.register(lake_commands)
    retention.register(lake_commands)
    events.register(sub)
    backup.register(sub)
    timestream.register(sub)
    annotate(parser)  # each command's --help: the QIS_* settings it reads
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, load settings from the environment, run the command."""
    from app.telemetry.logging import configure_logging

    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else ""
    try:
        args = build_parser(argv).parse_args(argv)
        try:
            settings = load_settings(os.environ)
        except SettingsError as exc:
            print(f"qis: {exc}", file=sys.stderr)
            return 2
        configure_logging(settings.telemetry.log_level)
        result: int = args.run(settings, args)
    except Unreachable as exc:
        print(f"qis: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ModuleNotFoundError as exc:
        message = _missing_tool_dependency(command, exc) if command in TOOLS else None
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
