"""The PostgreSQL tool runners of the backups: every subprocess ends within its deadline,
and a failure is one line saying which tool and why."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from app.adapters.postgres.backup import Deadline, ToolError, find_pg_bin, run_tool, stream_tool
from app.adapters.s3_transfer import HashingReader, HashingWriter


def test_a_tool_that_outlives_the_deadline_is_killed() -> None:
    began = time.monotonic()
    with pytest.raises(ToolError, match=r"^sleep: timed out after 0.5 s$"):
        run_tool(["sleep", "30"], "sleep", Deadline(0.5))
    assert time.monotonic() - began < 10


def test_a_streamed_tool_that_outlives_the_deadline_is_killed() -> None:
    began = time.monotonic()
    with pytest.raises(ToolError, match=r"^pg_dump: timed out after 0.5 s$"):
        stream_tool(["sleep", "30"], "pg_dump", Deadline(0.5), {}, lambda out: out.read())
    assert time.monotonic() - began < 10


def test_a_failing_tool_says_its_exit_code_and_last_stderr_lines() -> None:
    script = "echo one >&2; echo two >&2; exit 3"
    with pytest.raises(ToolError, match=r"^sh failed \(exit 3\): one \| two$"):
        run_tool(["sh", "-c", script], "sh", Deadline(10))
    with pytest.raises(ToolError, match=r"^sh failed \(exit 3\): one \| two$"):
        stream_tool(["sh", "-c", script], "sh", Deadline(10), {}, lambda out: out.read())


def test_a_streamed_tool_hands_its_output_to_the_consumer() -> None:
    out = stream_tool(["printf", "abc"], "printf", Deadline(10), {}, lambda o: o.read())
    assert out == b"abc"


def test_a_used_up_deadline_runs_nothing() -> None:
    deadline = Deadline(1.0, clock=iter([0.0, 2.0]).__next__)
    with pytest.raises(ToolError, match="the time bound of 1 s is used up"):
        deadline.remaining("initdb")


def test_missing_tools_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(
        ToolError, match=f"no pg_dump and pg_restore in {tmp_path}.*QIS_BACKUP__PG_BIN"
    ):
        find_pg_bin(str(tmp_path))


def test_transfers_hash_and_count_what_passes() -> None:
    seen: list[int] = []
    reader = HashingReader(io.BytesIO(b"hello world"), seen.append)
    assert reader.read(5) + reader.read() == b"hello world"
    assert (reader.bytes, seen) == (11, [5, 11])
    assert reader.hexdigest() == (
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    )
    target = io.BytesIO()
    writer = HashingWriter(target)
    writer.write(b"hello ")
    writer.write(b"world")
    assert (target.getvalue(), writer.bytes, writer.hexdigest()) == (
        b"hello world",
        11,
        reader.hexdigest(),
    )
