"""`qis ingest FILE`: post an observations file (CSV, JSON lines, Parquet) to the api.

The file is read as a stream (app/entrypoints/ingest_files.py), each row judged by the
server's own rules, and the valid rows posted through the typed client (client/,
`qis_client.AsyncQisClient`) in requests of up to `--batch-size` observations,
`--concurrency` requests in flight. Answers are settled in file order: a chunk's rejects
are appended to the rejects file and the checkpoint moves past it only once every
earlier chunk is settled, so the checkpoint always names a line before which everything
is answered for.

- Rejected rows (refused here, or by the api's 400/422 per-observation problems, mapped
  back to their lines) go to the rejects file as JSON lines: `{"line", "reason", "row"}`;
  the others of their request are sent again without them.
- The checkpoint (`FILE.qis-ingest.checkpoint`, JSON) holds the last settled line, where
  to resume reading, the running totals, and the file's size, mtime and a hash of its
  first 64 KiB; a run with a checkpoint for the same file version resumes after that
  line, one for another version is refused (`--restart` starts over).
- Ctrl-C (SIGINT) or SIGTERM: no new request; the requests in flight are answered and
  settled, the checkpoint written, exit 130. A second Ctrl-C abandons them: their rows
  are sent again on resume and, since ids are content hashes, stored once; the summary
  counts them as duplicates.
- Progress on stderr: a bar with rows, rate and ETA on a terminal, JSON lines otherwise.
  The summary on stdout (`--output json`: one JSON object).

Exit codes: 0 every row accepted (or a duplicate); 1 some rows rejected; 2 a usage
problem (no such file, bad header, a checkpoint of another file version) or the api
unreachable; 3 the api refused to go on (an answer not about a row: 401, 403, a 5xx after
the retries), checkpoint written; 130 interrupted, checkpoint written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

import msgspec

from app.entrypoints.ingest_files import (
    FORMATS,
    FileProblem,
    Format,
    Row,
    default_path,
    detect_format,
    fingerprint,
    reject_line,
    replace_atomically,
    rows,
    total,
)
from app.entrypoints.progress import Progress, Step
from app.entrypoints.unreachable import Unreachable, reason

if TYPE_CHECKING:
    from qis_client import AsyncQisClient, Token
    from qis_client.models import SubmittedObservation as ClientObservation

    from app.settings import Settings

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)
CHECKPOINT_SUFFIX = ".qis-ingest.checkpoint"
REJECTS_SUFFIX = ".rejects.jsonl"
MAX_BATCH = 5000
MAX_BODY_BYTES = 2 * 1024 * 1024
INGEST_EXTRA = "ingest"
INGEST_MODULES = frozenset({"qis_client", "pyarrow", "httpx"})


class Checkpoint(msgspec.Struct, kw_only=True):
    """Where a run got to; every row up to `line` is settled (answered and counted)."""

    version: int = 1
    file: str
    format: str
    size: int
    mtime_ns: int
    head_sha256: str
    line: int = 0
    resume: int = 0  # where reading resumes: a byte offset, or a row count (Parquet)
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects_bytes: int = 0
    sent_through: int = 0  # the last line sent, answered or not
    complete: bool = False


_checkpoint = msgspec.json.Decoder(Checkpoint)


class UsageProblem(Exception):
    """A problem with the command line, the file or its checkpoint: exit 2."""


class Stopped(Exception):
    """The api refused to go on (an answer that is not about a row)."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: the run stopped after settling (or abandoning) its requests."""


Reject = tuple[int, str, str]  # line, reason, raw row


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    rejects: list[Reject] = field(default_factory=list)


@dataclass
class Chunk:
    """Consecutive rows of the file: the sendable ones and those refused here."""

    last_line: int = 0
    resume: int = 0
    count: int = 0
    rows: list[Row] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    task: asyncio.Task[Outcome] | None = None


def chunks(source: Iterable[Row], size: int) -> Iterator[Chunk]:
    """Rows grouped `size` at a time (the file's order kept)."""
    chunk = Chunk()
    for row in source:
        chunk.count += 1
        chunk.last_line, chunk.resume = row.line, row.resume
        if row.observation is None:
            chunk.rejects.append((row.line, row.problem or "invalid", row.raw))
        else:
            chunk.rows.append(row)
        if chunk.count >= size:
            yield chunk
            chunk = Chunk()
    if chunk.count:
        yield chunk


# --- the command line ------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `qis ingest` to `qis`'s sub-parsers (the client is imported only when it runs)."""
    parser = sub.add_parser(
        "ingest",
        help="post an observations file (CSV, JSON lines, Parquet) to the api, resumable",
        description=(
            "Post every row of FILE as an observation, through the typed client. "
            "Exit 0: all accepted; 1: some rejected (see the rejects file); 2: usage "
            "problem or api unreachable; 3: the api refused to go on; 130: interrupted "
            "(run again to resume). Format and columns: docs/ingest.md."
        ),
    )
    parser.add_argument("file", type=Path, help="the observations file")
    parser.add_argument(
        "--format", choices=FORMATS, help="csv, jsonl or parquet (default: from the extension)"
    )
    parser.add_argument("--url", help="the api's base URL (default: QIS_CLIENT__URL)")
    parser.add_argument("--token", help="a bearer token (default: QIS_CLIENT__TOKEN)")
    parser.add_argument(
        "--token-command",
        help="a command printing a bearer token, or JSON with access_token and expires_in; "
        "run again before expiry and on a 401 (default: QIS_CLIENT__TOKEN_COMMAND)",
    )
    parser.add_argument(
        "--concurrency", type=_positive, default=4, help="requests in flight (default 4)"
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=MAX_BATCH,
        help=f"rows per request, at most {MAX_BATCH} (default {MAX_BATCH})",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=_positive,
        default=MAX_BODY_BYTES,
        help="request body limit, as the api's QIS_API__MAX_BODY_BYTES (default 2 MiB)",
    )
    parser.add_argument(
        "--rejects", type=Path, help=f"rejects file (default: FILE{REJECTS_SUFFIX})"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help=f"checkpoint file (default: FILE{CHECKPOINT_SUFFIX})"
    )
    parser.add_argument(
        "--restart", action="store_true", help="ignore an existing checkpoint: start over"
    )
    parser.add_argument(
        "--progress-every",
        type=float,
        default=None,
        help="seconds between progress updates (default: 0.2 on a terminal, 10 otherwise)",
    )
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="summary format on stdout"
    )
    parser.set_defaults(run=cmd_ingest)


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    # httpx logs every request at INFO: the progress and the summary say what happened.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        job = Job.from_args(settings, args)
        return asyncio.run(job.run())
    except UsageProblem as exc:
        sys.stderr.write(f"qis ingest: {exc}\n")
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        if module not in INGEST_MODULES:
            raise
        sys.stderr.write(
            f"qis ingest: needs the optional '{INGEST_EXTRA}' dependencies (no module "
            f"{module!r}); install them with `uv sync --extra {INGEST_EXTRA}` or "
            f"`pip install 'qis-data-management[{INGEST_EXTRA}]'`\n"
        )
        return EXIT_USAGE


# --- tokens ----------------------------------------------------------------------------


def command_token(command: str, timeout: float = 60.0) -> Token:
    """Run `command`; its stdout is the token, or JSON `{"access_token", "expires_in"}`."""
    from qis_client import Token

    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Stopped(f"token command failed: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Stopped(f"token command exited {done.returncode}: {last}")
    text = done.stdout.strip()
    if text.startswith("{"):
        try:
            answer = json.loads(text)
            expires_in = answer.get("expires_in")
            expires_at = time.time() + float(expires_in) if expires_in is not None else None
            return Token(str(answer["access_token"]), expires_at)
        except (ValueError, KeyError, TypeError) as exc:
            raise Stopped(f"token command printed JSON without access_token: {exc}") from None
    if not text:
        raise Stopped("token command printed nothing")
    return Token(text)


# --- the run ---------------------------------------------------------------------------


@dataclass
class Job:
    path: Path
    fmt: Format
    url: str
    token: str
    token_command: str
    concurrency: int
    batch_size: int
    max_body_bytes: int
    rejects_path: Path
    checkpoint_path: Path
    restart: bool
    progress_every: float | None
    output: str
    stream: TextIO = sys.stderr
    transport: Any = None  # an httpx transport in place of the network (tests)

    @classmethod
    def from_args(cls, settings: Settings, args: argparse.Namespace) -> Job:
        path: Path = args.file
        if not path.is_file():
            raise UsageProblem(f"no such file: {path}")
        if args.batch_size > MAX_BATCH:
            raise UsageProblem(f"--batch-size is at most {MAX_BATCH}, got {args.batch_size}")
        if args.max_body_bytes < 64 * 1024:
            raise UsageProblem("--max-body-bytes must be at least 65536 (one observation)")
        token = args.token if args.token is not None else settings.client.token
        token_command = (
            args.token_command if args.token_command is not None else settings.client.token_command
        )
        if token and token_command:
            raise UsageProblem("give a token or a token command, not both")
        try:
            fmt = detect_format(path, args.format)
        except FileProblem as exc:
            raise UsageProblem(str(exc)) from None
        return cls(
            path=path,
            fmt=fmt,
            url=args.url or settings.client.url,
            token=token,
            token_command=token_command,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            max_body_bytes=args.max_body_bytes,
            rejects_path=args.rejects or default_path(path, REJECTS_SUFFIX),
            checkpoint_path=args.checkpoint or default_path(path, CHECKPOINT_SUFFIX),
            restart=args.restart,
            progress_every=args.progress_every,
            output=args.output,
        )

    # -- checkpoint -------------------------------------------------------------------

    def start_checkpoint(self) -> Checkpoint:
        """The checkpoint to continue from: the saved one for this file version, or new."""
        identity = fingerprint(self.path)
        fresh = Checkpoint(file=str(self.path.resolve()), format=self.fmt, **identity)
        if self.restart or not self.checkpoint_path.exists():
            return fresh
        try:
            saved = _checkpoint.decode(self.checkpoint_path.read_bytes())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UsageProblem(
                f"checkpoint {self.checkpoint_path} is unreadable ({exc}): "
                "pass --restart to start over"
            ) from None
        same = (saved.size, saved.mtime_ns, saved.head_sha256, saved.format) == (
            fresh.size,
            fresh.mtime_ns,
            fresh.head_sha256,
            fresh.format,
        )
        if not same:
            raise UsageProblem(
                f"checkpoint {self.checkpoint_path} was written for another version of "
                f"{self.path} (size, modification time, first 64 KiB or format differ): "
                "pass --restart to ingest it from the start"
            )
        return saved

    def save(self, checkpoint: Checkpoint) -> None:
        replace_atomically(self.checkpoint_path, msgspec.json.encode(checkpoint))

    # -- the client -------------------------------------------------------------------

    def client(self) -> AsyncQisClient:
        from qis_client import AsyncQisClient

        token: Any = self.token or None
        if self.token_command:
            command = self.token_command
            token = lambda: command_token(command)  # noqa: E731
        return AsyncQisClient(
            self.url,
            token=token,
            max_batch=self.batch_size,
            max_body_bytes=self.max_body_bytes,
            transport=self.transport,
        )

    async def run(self) -> int:
        from qis_client import QisConnectionError, QisError

        checkpoint = self.start_checkpoint()
        if checkpoint.complete:
            self.report(checkpoint, Run(checkpoint.line), already=True)
            return EXIT_REJECTED if checkpoint.rejected else EXIT_OK
        try:
            source = rows(self.path, self.fmt, checkpoint.line, checkpoint.resume)
            run = Run(checkpoint.line, total=total(self.path, self.fmt), start=checkpoint.resume)
            first = next(source, None)  # reads the header: a bad one is a usage problem
        except FileProblem as exc:
            raise UsageProblem(str(exc)) from None
        resumed = checkpoint.line > 0
        every = self.progress_every
        progress = Progress(
            "ingest",
            stream=self.stream,
            tty_every=0.2 if every is None else every,
            json_every=10.0 if every is None else every,
        )
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, run.on_signal, self.stream)
        try:
            async with self.client() as client:
                try:  # an unreachable api: one line, before any file is written
                    await client.readiness()
                except QisConnectionError as exc:
                    raise Unreachable("the api", self.url, _connection_reason(exc)) from None
                with self.rejects_file(checkpoint, resumed) as rejects:
                    try:
                        with progress.step(self.path.name) as step:
                            await run.go(
                                self,
                                client,
                                checkpoint,
                                _prepend(first, source),
                                rejects,
                                step,
                            )
                    except Interrupted:
                        self.report(checkpoint, run, interrupted=True)
                        return EXIT_INTERRUPTED
        except QisConnectionError as exc:
            self.report(checkpoint, run, stopped=True)
            raise Unreachable("the api", self.url, _connection_reason(exc)) from None
        except (QisError, Stopped) as exc:
            self.report(checkpoint, run, stopped=True)
            sys.stderr.write(f"qis ingest: stopped: {exc}\n")
            return EXIT_STOPPED
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
        checkpoint.complete = True
        self.save(checkpoint)
        if self.rejects_path.exists() and self.rejects_path.stat().st_size == 0:
            self.rejects_path.unlink()
        self.report(checkpoint, run)
        return EXIT_REJECTED if checkpoint.rejected else EXIT_OK

    def rejects_file(self, checkpoint: Checkpoint, resumed: bool) -> IO[bytes]:
        """The rejects file, cut back to what the checkpoint's settled rows wrote."""
        f = self.rejects_path.open("r+b" if self.rejects_path.exists() else "w+b")
        f.truncate(checkpoint.rejects_bytes if resumed else 0)
        f.seek(0, 2)
        return f

    # -- summary ----------------------------------------------------------------------

    def report(
        self,
        checkpoint: Checkpoint,
        run: Run,
        *,
        interrupted: bool = False,
        stopped: bool = False,
        already: bool = False,
    ) -> None:
        seconds = run.seconds()
        summary: dict[str, Any] = {
            "file": str(self.path),
            "rows": checkpoint.rows,
            "accepted": checkpoint.accepted,
            "duplicates": checkpoint.duplicates,
            "rejected": checkpoint.rejected,
            "rejects_file": str(self.rejects_path) if checkpoint.rejected else None,
            "complete": checkpoint.complete,
            "interrupted": interrupted,
            "last_line": checkpoint.line,
            "checkpoint": str(self.checkpoint_path),
            "resumed_after_line": run.resumed_after,
            "run_rows": run.rows,
            "run_seconds": round(seconds, 3),
            "run_rows_per_second": round(run.rows / seconds, 1) if seconds > 0 else 0.0,
        }
        if self.output == "json":
            sys.stdout.write(json.dumps(summary) + "\n")
            return
        lines = [
            f"{self.path}: {checkpoint.rows:,} rows: {checkpoint.accepted:,} accepted, "
            f"{checkpoint.duplicates:,} duplicates, {checkpoint.rejected:,} rejected"
        ]
        if checkpoint.rejected:
            lines.append(f"  rejected rows (line, reason, row): {self.rejects_path}")
        if already:
            lines.append(
                f"  already ingested (checkpoint {self.checkpoint_path}); "
                "--restart sends the file again"
            )
        else:
            resumed = f", resumed after line {run.resumed_after:,}" if run.resumed_after else ""
            lines.append(
                f"  this run: {run.rows:,} rows in {seconds:.1f} s, "
                f"{summary['run_rows_per_second']:,.0f} rows/s{resumed}"
            )
        if interrupted or stopped:
            lines.append(
                f"  {'interrupted' if interrupted else 'stopped'} after line "
                f"{checkpoint.line:,}: run the same command again to resume"
            )
        sys.stdout.write("\n".join(lines) + "\n")


def _prepend(first: Row | None, rest: Iterator[Row]) -> Iterator[Row]:
    if first is not None:
        yield first
        yield from rest


def _connection_reason(exc: BaseException) -> str:
    """The socket error behind a client's connection failure, in a few words: the first
    with an errno in the chain of causes (httpx wraps `ConnectionRefusedError` twice)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for candidate in chain:
        if isinstance(candidate, OSError) and candidate.errno is not None:
            return reason(candidate)
    return str(exc)


class Run:
    """One invocation: its counters, clock, and the in-order settling of its requests."""

    def __init__(self, resumed_after: int, total: tuple[int, str] = (0, ""), start: int = 0):
        self.resumed_after = resumed_after
        self.total, self.unit = total
        self.start = start
        self.rows = 0
        self.started = time.monotonic()
        self.signals = 0
        self.pending: deque[Chunk] = deque()

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def on_signal(self, stream: TextIO) -> None:
        self.signals += 1
        if self.signals == 1:
            stream.write(
                f"\nqis ingest: stopping after the {len(self.pending)} request(s) in flight "
                "(Ctrl-C again to abandon them)\n"
            )
        else:
            for chunk in self.pending:
                if chunk.task is not None:
                    chunk.task.cancel()

    async def go(
        self,
        job: Job,
        client: AsyncQisClient,
        checkpoint: Checkpoint,
        source: Iterator[Row],
        rejects: IO[bytes],
        step: Step,
    ) -> None:
        resent_through = checkpoint.sent_through
        try:
            for chunk in chunks(source, job.batch_size):
                if self.signals:
                    break
                if chunk.rows:
                    checkpoint.sent_through = max(checkpoint.sent_through, chunk.last_line)
                    job.save(checkpoint)
                    chunk.task = asyncio.create_task(send(client, chunk.rows, resent_through))
                self.pending.append(chunk)
                await asyncio.sleep(0)  # lets a signal or an answer in
                while self.pending and (
                    len(self.pending) >= job.concurrency or _ready(self.pending[0])
                ):
                    await self.settle(job, checkpoint, rejects, step)
            while self.pending:
                await self.settle(job, checkpoint, rejects, step)
        finally:
            for chunk in self.pending:  # left by an error or an abandonment
                if chunk.task is not None:
                    chunk.task.cancel()
            await asyncio.gather(
                *(c.task for c in self.pending if c.task is not None), return_exceptions=True
            )
            job.save(checkpoint)
        if self.signals:
            step.failure = "interrupted"
            raise Interrupted

    async def settle(
        self, job: Job, checkpoint: Checkpoint, rejects: IO[bytes], step: Step
    ) -> None:
        """Count the oldest chunk in: its rejects to the file, then the checkpoint."""
        chunk = self.pending[0]
        outcome = Outcome()
        if chunk.task is not None:
            try:
                outcome = await chunk.task
            except asyncio.CancelledError:
                if self.signals < 2:
                    raise
                step.failure = "interrupted"
                raise Interrupted from None
        self.pending.popleft()
        refused = sorted(chunk.rejects + outcome.rejects)
        if refused:
            rejects.write(b"".join(reject_line(*r) for r in refused))
            rejects.flush()
        checkpoint.line, checkpoint.resume = chunk.last_line, chunk.resume
        checkpoint.rows += chunk.count
        checkpoint.accepted += outcome.accepted
        checkpoint.duplicates += outcome.duplicates
        checkpoint.rejected += len(refused)
        checkpoint.rejects_bytes = rejects.tell()
        job.save(checkpoint)
        self.rows += chunk.count
        self.update(checkpoint, step)

    def update(self, checkpoint: Checkpoint, step: Step) -> None:
        seconds = self.seconds()
        fraction = checkpoint.resume / self.total if self.total else None
        detail: dict[str, Any] = {
            "accepted": checkpoint.accepted,
            "duplicates": checkpoint.duplicates,
            "rejected": checkpoint.rejected,
            "rate": round(self.rows / seconds, 1) if seconds > 0 else None,
        }
        if fraction is not None:
            detail["percent"] = round(100 * fraction, 1)
            done_now = checkpoint.resume - self.start
            if done_now > 0:
                detail["eta_seconds"] = round(
                    seconds * (self.total - checkpoint.resume) / done_now, 1
                )
        step.update(checkpoint.rows, None, "rows", **detail)


def _ready(chunk: Chunk) -> bool:
    return chunk.task is None or chunk.task.done()


def _client_observation(row: Row) -> ClientObservation:
    from qis_client import SubmittedObservation

    item = row.observation
    assert item is not None
    return SubmittedObservation(
        reference_data_id=item.reference_data_id,
        source=item.source,
        snap=item.snap,
        value=item.value,
        observed_at=item.observed_at,
        observation_id=item.observation_id,
        attributes=item.attributes,
    )


def _row_problems(errors: Iterable[Any], count: int) -> dict[int, str]:
    """Per-observation problems of a 400/422 answer: index in the request -> reason."""
    found: dict[int, list[str]] = {}
    for error in errors:
        loc = list(error.loc)
        index = loc[1] if len(loc) >= 2 and loc[0] == "observations" else None
        if isinstance(index, int) and 0 <= index < count:
            where = ".".join(str(part) for part in loc[2:])
            found.setdefault(index, []).append(f"{where}: {error.msg}" if where else error.msg)
    return {index: "; ".join(reasons) for index, reasons in found.items()}


async def send(client: AsyncQisClient, rows: list[Row], resent_through: int) -> Outcome:
    """Post `rows`; rows the api refuses are set aside and the others sent again.

    A 400/422 naming observations rejects those rows; one naming none (or a 413) splits
    the request in halves until the offending row is alone. Rows at or before
    `resent_through` were sent by an interrupted run: counted as duplicates.
    """
    from qis_client import InvalidRequest, PayloadTooLarge, batches

    outcome = Outcome()
    work = [rows]
    while work:
        part_rows = work.pop()
        observations = [_client_observation(row) for row in part_rows]
        start = 0
        for batch in batches(observations, client.max_batch, client.max_body_bytes):
            part = part_rows[start : start + len(batch.observation_ids)]
            start += len(part)
            try:
                answer = await client.post_batch(batch)
            except (InvalidRequest, PayloadTooLarge) as problem:
                bad = _row_problems(problem.errors, len(part))
                if bad:
                    outcome.rejects += [
                        (part[i].line, f"api: {why}", part[i].raw) for i, why in bad.items()
                    ]
                    rest = [row for i, row in enumerate(part) if i not in bad]
                    if rest:
                        work.append(rest)
                elif len(part) > 1:
                    half = len(part) // 2
                    work += [part[half:], part[:half]]
                else:
                    outcome.rejects.append((part[0].line, f"api: {problem}", part[0].raw))
                continue
            resent = sum(1 for row in part if row.line <= resent_through)
            duplicates = min(len(part), answer.duplicates + resent)
            outcome.accepted += len(part) - duplicates
            outcome.duplicates += duplicates
    return outcome
