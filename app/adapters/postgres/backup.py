"""PostgreSQL's side of backups and restore drills: what a snapshot holds, the client
tools (pg_dump, pg_restore) and a throw-away local cluster (initdb, pg_ctl).

Every subprocess runs with a timeout taken from one `Deadline`, so a backup or a drill
ends, one way or the other, within its bound.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from app.adapters.postgres.pool import connect_options
from app.domain.backup import AuditHead
from app.domain.lake import AUDIT, HOUR, OBSERVATIONS, OFFICIAL_VALUES

if TYPE_CHECKING:
    from app.adapters.postgres import Connection
    from app.settings import DbSettings

T = TypeVar("T")


class ToolError(RuntimeError):
    """A PostgreSQL tool failed, timed out or is missing; `str()` says which and why."""


class Deadline:
    """What is left of a command's time bound."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self._clock = seconds, clock
        self._end = clock() + seconds

    def remaining(self, what: str) -> float:
        left = self._end - self._clock()
        if left <= 0:
            raise ToolError(f"{what}: the time bound of {self.seconds:g} s is used up")
        return left


def find_pg_bin(configured: str = "") -> Path:
    """The directory of the PostgreSQL tools: `configured`, else the newest
    /usr/lib/postgresql/<major>/bin, else the one of `pg_dump` on PATH."""
    candidates = [Path(configured)] if configured else []
    if not configured:
        majors = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        candidates += majors
        on_path = shutil.which("pg_dump")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("pg_dump", "pg_restore")):
            return directory
    where = configured or "/usr/lib/postgresql/*/bin or PATH"
    raise ToolError(f"no pg_dump and pg_restore in {where} (set QIS_BACKUP__PG_BIN)")


def run_tool(
    argv: Sequence[str], what: str, deadline: Deadline, env: dict[str, str] | None = None
) -> str:
    """Run a tool to its end within the deadline; its stdout, or ToolError with its
    stderr's last lines."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=deadline.remaining(what),
            env=env,
            cwd="/",
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"{what}: timed out after {deadline.seconds:g} s") from None
    except OSError as exc:
        raise ToolError(f"{what}: cannot run {argv[0]} ({exc.strerror})") from None
    if done.returncode != 0:
        raise ToolError(f"{what} failed (exit {done.returncode}): {tail(done.stderr)}")
    return done.stdout


def stream_tool(
    argv: Sequence[str],
    what: str,
    deadline: Deadline,
    env: dict[str, str],
    consume: Callable[[IO[bytes]], T],
) -> T:
    """Run a tool whose stdout `consume` reads as it comes (a dump streamed to S3), killed
    when the deadline passes; what `consume` returned, or ToolError when the tool failed."""
    with (
        tempfile.TemporaryFile() as stderr,
        subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=stderr, env=env, cwd="/"
        ) as proc,
    ):
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(deadline.remaining(what), kill)
        timer.start()
        try:
            assert proc.stdout is not None
            result = consume(proc.stdout)
            code = None if timed_out.is_set() else proc.wait(timeout=deadline.remaining(what))
        except (subprocess.TimeoutExpired, ToolError):
            timed_out.set()
        except BaseException:
            proc.kill()
            raise
        finally:
            timer.cancel()
        if timed_out.is_set():
            proc.kill()
            raise ToolError(f"{what}: timed out after {deadline.seconds:g} s")
        if code != 0:
            stderr.seek(0)
            raise ToolError(f"{what} failed (exit {code}): {tail(stderr.read().decode())}")
        return result


def tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:]) or "no output"


def tool_version(pg_bin: Path, tool: str, deadline: Deadline) -> str:
    """`pg_dump (PostgreSQL) 15.18` -> `15.18`."""
    out = run_tool([str(pg_bin / tool), "--version"], f"{tool} --version", deadline)
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    return match[1] if match else out.strip()


async def libpq_target(dsn: str, settings: DbSettings) -> tuple[str, dict[str, str]]:
    """The DSN without its password, and the environment that gives libpq tools the
    password (from the DSN, the secret or an IAM token: the pool's own rules) and TLS, so
    no secret appears on a command line."""
    parts = urlsplit(dsn)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    options = await connect_options(dsn, settings)
    password = options.get("password")
    if callable(password):
        password = await password()
    elif password is None and parts.password is not None:
        password = unquote(parts.password)
    if password:
        env["PGPASSWORD"] = str(password)
    if "user" in options:
        env["PGUSER"] = str(options["user"])
    if settings.ssl_mode:
        env["PGSSLMODE"] = settings.ssl_mode
    if settings.ssl_root_cert:
        env["PGSSLROOTCERT"] = settings.ssl_root_cert
    user = f"{quote(unquote(parts.username), safe='')}@" if parts.username else ""
    host = parts.netloc.rpartition("@")[2]
    env["PGCONNECT_TIMEOUT"] = str(max(1, int(settings.connect_timeout_seconds)))
    return urlunsplit(parts._replace(netloc=user + host)), env


def database_name(dsn: str) -> str:
    name = unquote(urlsplit(dsn).path.lstrip("/"))
    if not name:
        raise ToolError("the DSN names no database")
    return name


# --- what a snapshot holds ------------------------------------------------------------


async def table_counts(conn: Connection) -> dict[str, int]:
    """Rows of every table outside the system schemas, "schema.table" -> count (the
    leaves of partitioned tables, never their parents: each row is counted once)."""
    tables = await conn.fetch(
        """SELECT n.nspname AS schema, c.relname AS name
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r'
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\\_%'
            ORDER BY 1, 2"""
    )
    counts: dict[str, int] = {}
    for t in tables:
        ident = f"{_quote_ident(t['schema'])}.{_quote_ident(t['name'])}"
        counts[f"{t['schema']}.{t['name']}"] = int(
            await conn.fetchval(f"SELECT count(*) FROM {ident}")
        )
    return counts


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def audit_head(conn: Connection) -> AuditHead | None:
    row = await conn.fetchrow("SELECT seq, hash, at FROM audit_log ORDER BY seq DESC LIMIT 1")
    return None if row is None else AuditHead(seq=row["seq"], hash=row["hash"], at=row["at"])


async def migration_version(conn: Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))


@dataclass(frozen=True)
class Snapshot:
    """An exported snapshot (pg_dump --snapshot reads exactly this state) and what it holds."""

    snapshot_id: str
    taken_at: datetime
    server_version: str
    tables: dict[str, int]
    audit: AuditHead | None
    migration_version: int


async def export_snapshot(conn: Connection) -> Snapshot:
    """Export the snapshot of `conn`'s open REPEATABLE READ transaction and read its facts;
    the transaction must stay open until pg_dump has started with it."""
    snapshot_id = await conn.fetchval("SELECT pg_export_snapshot()")
    return Snapshot(
        snapshot_id=snapshot_id,
        taken_at=await conn.fetchval("SELECT now()"),  # the transaction's, the snapshot's
        server_version=await conn.fetchval("SHOW server_version"),
        tables=await table_counts(conn),
        audit=await audit_head(conn),
        migration_version=await migration_version(conn),
    )


# --- the lake's hours as the database holds them -------------------------------------

_HOUR_ROWS = {
    OFFICIAL_VALUES: "SELECT count(*) FROM official_values WHERE snap >= $1 AND snap < $2",
    OBSERVATIONS: "SELECT count(*) FROM observations WHERE snap >= $1 AND snap < $2",
    AUDIT: "SELECT count(*) FROM audit_log WHERE at >= $1 AND at < $2",
}


async def archived_hours(conn: Connection) -> list[tuple[datetime, int]]:
    """(hour, newest generation) of every hour `lake_hours` says was archived."""
    rows = await conn.fetch("SELECT hour, generation FROM lake_hours ORDER BY hour")
    return [(r["hour"], r["generation"]) for r in rows]


async def retained_from(conn: Connection) -> dict[str, datetime]:
    """Per dataset, the time before which retention dropped its rows (lake_horizon)."""
    rows = await conn.fetch("SELECT dataset, retained_from FROM lake_horizon")
    return {r["dataset"]: r["retained_from"] for r in rows}


async def hour_rows(conn: Connection, dataset: str, hour: datetime) -> int:
    return int(await conn.fetchval(_HOUR_ROWS[dataset], hour, hour + HOUR))


# --- a throw-away cluster -------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Cluster:
    port: int
    password: str
    version: str

    def dsn(self, database: str) -> str:
        """For asyncpg: with the password."""
        return (
            f"postgresql://postgres:{quote(self.password)}@127.0.0.1:{self.port}/{quote(database)}"
        )

    def url(self, database: str) -> str:
        """For the libpq tools, whose password comes from `environment()`."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{quote(database)}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return env | {"PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}


# PostgreSQL refuses to run as root; as root the cluster belongs to this OS user.
CLUSTER_OS_USER = "postgres"
# A restore into a cluster that is thrown away afterwards needs no crash safety.
_DRILL_SERVER_OPTIONS = (
    "-c fsync=off -c full_page_writes=off -c synchronous_commit=off "
    "-c max_wal_size=4GB -c checkpoint_timeout=30min -c wal_level=minimal "
    "-c max_wal_senders=0 -c autovacuum=off"
)


@contextlib.contextmanager
def temporary_cluster(
    pg_bin: Path, deadline: Deadline, start_attempts: int = 3
) -> Iterator[Cluster]:
    """A fresh PostgreSQL cluster in a temporary directory, listening on a free loopback
    port with a random password, stopped and deleted on exit."""
    as_root = os.geteuid() == 0
    owner = pwd.getpwnam(CLUSTER_OS_USER) if as_root else None
    prefix: list[str] = ["runuser", "-u", CLUSTER_OS_USER, "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="qis-restore-drill-"))
    data = base / "data"
    password = secrets.token_urlsafe(24)
    started = False
    try:
        (base / "pwfile").write_text(password + "\n")
        if owner is not None:
            for path in (base, base / "pwfile"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(base / "pwfile", 0o600)
        run_tool(
            [
                *prefix,
                str(pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={base / 'pwfile'}",
                "--no-sync",
            ],
            "initdb of the drill's cluster",
            deadline,
        )
        version = (data / "PG_VERSION").read_text().strip()
        for attempt in range(1, start_attempts + 1):
            port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} "
                f"-c unix_socket_directories={base} {_DRILL_SERVER_OPTIONS}"
            )
            try:
                run_tool(
                    [
                        *prefix,
                        str(pg_bin / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(base / "server.log"),
                        "-w",
                        "-t",
                        str(max(1, int(min(120.0, deadline.remaining("start"))))),
                        "-o",
                        options,
                        "start",
                    ],
                    "start of the drill's cluster",
                    deadline,
                )
            except ToolError:
                # Someone took the port between the probe and the start: another port.
                if attempt == start_attempts:
                    log = base / "server.log"
                    why = tail(log.read_text()) if log.exists() else "no log"
                    raise ToolError(f"the drill's cluster did not start: {why}") from None
                continue
            started = True
            break
        yield Cluster(port=port, password=password, version=version)
    finally:
        if started:
            _stop(prefix, pg_bin, data)
        shutil.rmtree(base, ignore_errors=True)


def _stop(prefix: list[str], pg_bin: Path, data: Path) -> None:
    """Stop the cluster (immediate: nothing in it is kept); kill its postmaster if pg_ctl
    cannot."""
    try:
        run_tool(
            [
                *prefix,
                str(pg_bin / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            "stop of the drill's cluster",
            Deadline(60.0),
        )
    except ToolError:
        pid_file = data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)
