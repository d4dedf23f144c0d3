"""The seed step and `--skip-seed` discovery, against a tiny in-process fake of the API."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from loadtests.data import ON_TIME, Workload
from loadtests.seed import SeedError, discover, seed

NOW = datetime(2026, 1, 15, 14, 2, 30, tzinfo=UTC)


class FakeApi(ThreadingHTTPServer):
    """Configs, observations, and a version 1 for every (series, snap) with one."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.configs: dict[str, Any] = {}
        self.published: dict[tuple[str, str], str] = {}
        self.puts = 0
        self.posted: list[dict[str, Any]] = []
        self.headers_seen: list[str | None] = []


class Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_PUT(self) -> None:
        self.server.puts += 1
        series = self.path.rsplit("/", 1)[1]
        self.server.configs[series] = {**self._body(), "priority": []}
        self._answer(200, {"reference_data_id": series, "config": self.server.configs[series]})

    def do_POST(self) -> None:
        self.server.headers_seen.append(self.headers.get("Authorization"))
        items = self._body()["observations"]
        self.server.posted += items
        for item in items:
            key = (item["reference_data_id"], item["snap"])
            self.server.published.setdefault(key, "2026-01-15T14:02:31Z")
        self._answer(202, {"accepted": len(items), "duplicates": 0, "observation_ids": []})

    def do_GET(self) -> None:
        url = urllib.parse.urlparse(self.path)
        parts = url.path.split("/")
        series = parts[3]
        if len(parts) == 4:
            if series in self.server.configs:
                self._answer(200, {"config": self.server.configs[series]})
            else:
                self._answer(404, {})
            return
        query = urllib.parse.parse_qs(url.query)
        start, end = query["from"][0], query["to"][0]
        items = [
            {"snap": snap, "recorded_at": at, "version": 1}
            for (s, snap), at in sorted(self.server.published.items())
            if s == series and start <= snap < end
        ]
        self._answer(200, {"items": items, "next_cursor": None})


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(api: FakeApi) -> str:
    return f"http://127.0.0.1:{api.server_address[1]}"


WORKLOAD = Workload(series=12, sources=3, late_share=0.2, missing_share=0.0, seed_snaps=3)


def test_seed_configures_posts_waits_then_marks_the_seed_complete(api: FakeApi) -> None:
    seeded = seed(
        url(api), WORKLOAD, headers={"Authorization": "Bearer t"}, now=NOW, log=lambda _: None
    )

    assert [s.isoformat() for s in seeded.snaps] == [
        "2026-01-15T13:59:00+00:00",
        "2026-01-15T14:00:00+00:00",
        "2026-01-15T14:01:00+00:00",
    ]
    assert seeded.as_of.isoformat() == "2026-01-15T14:02:31.001000+00:00"
    assert api.puts == 12
    # every source of every snap posted once (on time first, late after), plus the marker
    assert len(api.posted) == 12 * 3 * 3 + 3 * 3
    ids = [i["reference_data_id"] for i in api.posted]
    on_time = sum(1 for snap in seeded.snaps for _ in WORKLOAD.items(snap, ON_TIME))
    assert ids.count("LT-SEED") == 3 * 3
    assert ids.index("LT-SEED") == on_time  # after every on-time observation, before late ones
    assert set(api.headers_seen) == {"Bearer t"}


def test_a_second_seed_skips_unchanged_configurations(api: FakeApi) -> None:
    seed(url(api), WORKLOAD, headers={}, now=NOW, log=lambda _: None)
    seed(url(api), WORKLOAD, headers={}, now=NOW, log=lambda _: None)

    assert api.puts == 12


def test_discovery_finds_the_seeded_snaps_from_the_marker(api: FakeApi) -> None:
    with pytest.raises(SeedError, match="no completed seed"):
        discover(url(api), WORKLOAD, headers={}, now=NOW)
    seeded = seed(url(api), WORKLOAD, headers={}, now=NOW, log=lambda _: None)
    # a later live snap of ordinary series is not a seeded one
    api.published[("LT-00000", "2026-01-15T14:02:00Z")] = "2026-01-15T14:02:40Z"

    found = discover(url(api), WORKLOAD, headers={}, now=NOW.replace(minute=5))

    assert found.snaps == seeded.snaps


def test_the_seed_gives_up_when_nothing_gets_published(api: FakeApi) -> None:
    api.published = _Discarding()
    with pytest.raises(SeedError, match="worker and the scheduler"):
        seed(url(api), WORKLOAD, headers={}, now=NOW, timeout=0.2, log=lambda _: None)


class _Discarding(dict[tuple[str, str], str]):
    def setdefault(self, key: tuple[str, str], default: str | None = None) -> str:
        return default or ""
