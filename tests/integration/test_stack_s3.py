"""The stack's S3 service (moto server): up/down/status/env, and objects that survive a
restart. Runs its own instance (own state directory and port), never the shared one."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.stack import stack

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        "STACK_DIR": str(tmp_path / "stack"),
        "STACK_S3_PORT": str(_free_port()),
        "STACK_RESERVE_PORTS": "0",
    }
    try:
        yield env
    finally:
        stack("down", "s3", env=env)


def _client(port: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _s3_line(env: dict[str, str]) -> str:
    status = stack("status", env=env, check=False)
    return next(line for line in status.splitlines() if line.startswith("s3 "))


def test_s3_service_keeps_objects_across_a_restart(own_s3: dict[str, str]) -> None:
    port = own_s3["STACK_S3_PORT"]
    stack("up", "s3", env=own_s3)
    line = _s3_line(own_s3)
    assert line.split()[1] == "up"
    assert f"127.0.0.1:{port}" in line
    pid = (Path(own_s3["STACK_DIR"]) / "s3" / "s3.pid").read_text().strip()
    assert f"pid {pid}" in line

    exports = stack("env", env=own_s3)
    assert f"export QIS_LAKE__ENDPOINT_URL=http://127.0.0.1:{port}" in exports
    assert "export QIS_LAKE__ACCESS_KEY_ID=testing" in exports
    # The same moto server is the local EventBridge.
    assert f"export QIS_EVENTBRIDGE__ENDPOINT_URL=http://127.0.0.1:{port}" in exports
    assert "export QIS_EVENTBRIDGE__ACCESS_KEY_ID=testing" in exports

    bucket = f"stack-{uuid.uuid4().hex[:12]}"
    body = bytes(range(256)) * 300
    s3 = _client(port)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/kept", Body=body, IfNoneMatch="*")
    s3.put_object(Bucket=bucket, Key="a/deleted", Body=b"gone")
    s3.delete_object(Bucket=bucket, Key="a/deleted")

    stack("up", "s3", env=own_s3)  # idempotent: same process
    assert (Path(own_s3["STACK_DIR"]) / "s3" / "s3.pid").read_text().strip() == pid

    stack("down", "s3", env=own_s3)
    assert _s3_line(own_s3).split()[1] == "down"
    assert not Path(f"/proc/{pid}").exists() or "moto" not in Path(
        f"/proc/{pid}/cmdline"
    ).read_text(errors="replace")

    stack("up", "s3", env=own_s3)
    s3 = _client(port)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["a/kept"]
    assert s3.get_object(Bucket=bucket, Key="a/kept")["Body"].read() == body
    assert "PUT /" in stack("logs", "s3", env=own_s3)  # the server's request log


def test_the_replay_keeps_s3_only_and_survives_an_unreadable_line(
    own_s3: dict[str, str],
) -> None:
    """The recording also holds the server's EventBridge (and SQS, Timestream) requests,
    and concurrent requests can interleave into an unreadable line: a restart replays
    the S3 requests and leaves the rest out instead of failing."""
    port = own_s3["STACK_S3_PORT"]
    stack("up", "s3", env=own_s3)
    _client(port).create_bucket(Bucket="kept")
    events = boto3.client(
        "events",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    events.create_event_bus(Name="not-replayed")
    stack("down", "s3", env=own_s3)
    recording = Path(own_s3["STACK_DIR"]) / "s3" / "recording.jsonl"
    with recording.open("a") as f:
        f.write('{"headers": {"Host": "x"}, "method": "PUT"}{"interleaved": \n')

    stack("up", "s3", env=own_s3)

    assert [b["Name"] for b in _client(port).list_buckets()["Buckets"]] == ["kept"]
    kept = recording.read_text().splitlines()
    assert not any('"X-Amz-Target"' in line or "interleaved" in line for line in kept)
    buses = [b["Name"] for b in events.list_event_buses()["EventBuses"]]
    assert "not-replayed" not in buses
