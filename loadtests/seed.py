"""Seed the data the read users need, through the public API, and wait until it is there.

    python -m loadtests.seed --host http://127.0.0.1:8000 [--series 200 --sources 5 ...]

1. `PUT /v1/reference-data/{id}` for every series (every source expected, a majority
   needed, window = snap interval);
2. post the on-time (and outlier) observations of the last `seed_snaps` closed snaps, in
   batches of 500;
3. wait (bounded) until every seeded snap of every series has version 1, read back with
   the history route, which also yields the latest `recorded_at`: an `as_of` at or after
   it sees every seeded version, whatever the clock skew to the service;
4. post the marker series' observations (`<prefix>-SEED`, one per seeded snap: it exists
   only once a seed completed) and the late observations (they create version 2 of some
   snaps), without waiting.

`discover()` is the `--skip-seed` path (staging, or a second run): it reads the seeded
snaps from the marker series' history instead of creating them.

Plain `urllib` and threads: under Locust, gevent has patched both, so this cooperates
with the running users; standalone it is ordinary blocking code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from loadtests.auth import auth_headers
from loadtests.data import LATE, ON_TIME, Workload, stamp

POST_BATCH = 500
PARALLEL = 8


class SeedError(RuntimeError):
    """The data the read users need could not be created or found."""


@dataclass(frozen=True)
class Seeded:
    """What the readers may read: snaps with version 1 for every series, and an `as_of`
    at which all of them were known."""

    snaps: tuple[datetime, ...]
    as_of: datetime


def _request(
    base_url: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: Any = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (the load-test host, http or https)
        base_url.rstrip("/") + path,
        data=data,
        method=method,
        headers={**headers, **({"Content-Type": "application/json"} if data else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _check(status: int, body: bytes, expected: int, what: str) -> None:
    if status != expected:
        raise SeedError(f"{what}: HTTP {status}: {body[:300]!r}")


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _history(
    base_url: str, headers: Mapping[str, str], series: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"from": stamp(start), "to": stamp(end), "limit": 1000})
    status, body = _request(
        base_url, "GET", f"/v1/reference-data/{series}/official-values?{query}", headers
    )
    _check(status, body, 200, f"history of {series}")
    items: list[dict[str, Any]] = json.loads(body)["items"]
    return items


def _same_config(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(stored.get(key) == value for key, value in wanted.items())


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def seed(
    base_url: str,
    workload: Workload,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    now: datetime | None = None,
    log: Callable[[str], None] = print,
) -> Seeded:
    """Create the seeded series and snaps through the API; wait until they are published."""
    headers = dict(auth_headers() if headers is None else headers)
    started = time.monotonic()
    snaps = workload.seed_snap_times(now or datetime.now(UTC))
    series_ids = [workload.series_id(i) for i in range(workload.series)]
    config = workload.series_config()

    def put(series: str) -> None:
        # A configuration change is audited and serialised by the service (tens of ms
        # each): skip the PUT when an earlier run left the same configuration.
        path = f"/v1/reference-data/{series}"
        status, body = _request(base_url, "GET", path, headers)
        if status == 200 and _same_config(json.loads(body).get("config", {}), config):
            return
        status, body = _request(base_url, "PUT", path, headers, config)
        _check(status, body, 200, f"PUT {series}")

    def post(items: list[dict[str, Any]]) -> None:
        status, body = _request(
            base_url, "POST", "/v1/observations", headers, {"observations": items}, timeout=30
        )
        _check(status, body, 202, f"POST {len(items)} observations")

    on_time = [item for snap in snaps for item in workload.items(snap, ON_TIME)]
    late = [item for snap in snaps for item in workload.items(snap, LATE)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(put, series_ids))
        list(pool.map(post, _chunks(on_time, POST_BATCH)))
    log(
        f"seed: {len(series_ids)} series configured, {len(on_time)} observations posted for "
        f"{len(snaps)} snaps ({stamp(snaps[0])} .. {stamp(snaps[-1])})"
    )

    end = snaps[-1] + timedelta(seconds=1)
    pending = set(series_ids)
    latest_recorded = datetime.min.replace(tzinfo=UTC)
    deadline = started + timeout
    while pending:
        if time.monotonic() > deadline:
            raise SeedError(
                f"seed: {len(pending)} series still lack a version of every seeded snap after "
                f"{timeout:.0f} s (is the worker and the scheduler running?)"
            )
        with ThreadPoolExecutor(PARALLEL) as pool:
            found = dict(
                zip(
                    sorted(pending),
                    pool.map(
                        lambda s: _history(base_url, headers, s, snaps[0], end), sorted(pending)
                    ),
                    strict=True,
                )
            )
        for series, items in found.items():
            if len(items) == len(snaps):
                pending.discard(series)
                recorded = max(_parse(i["recorded_at"]) for i in items)
                latest_recorded = max(latest_recorded, recorded)
        if pending:
            time.sleep(1.0)
    # The marker: published only now, so `discover()` finds complete seeds only.
    post([workload.marker(snap, source) for snap in snaps for source in range(workload.sources)])
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(post, _chunks(late, POST_BATCH)))
    log(
        f"seed: every series has version 1 of every seeded snap after "
        f"{time.monotonic() - started:.1f} s; {len(late)} late observations posted"
    )
    return Seeded(tuple(snaps), latest_recorded + timedelta(milliseconds=1))


def discover(
    base_url: str,
    workload: Workload,
    *,
    headers: Mapping[str, str] | None = None,
    lookback: timedelta = timedelta(days=7),
    now: datetime | None = None,
) -> Seeded:
    """Find what an earlier seed left: the snaps of its marker series (the seed publishes
    the marker only once every series has every seeded snap); `as_of` now."""
    headers = dict(auth_headers() if headers is None else headers)
    end = now or datetime.now(UTC)
    items = _history(base_url, headers, workload.marker_id, end - lookback, end)
    if not items:
        raise SeedError(
            f"no completed seed ({workload.marker_id}) in the last {lookback}: run once "
            "without --skip-seed (or `python -m loadtests.seed`) with the same workload options"
        )
    snaps = sorted(_parse(i["snap"]) for i in items)
    return Seeded(tuple(snaps[-workload.seed_snaps :]), end - timedelta(seconds=1))


def add_workload_arguments(parser: Any, env_prefix: str | None = None) -> None:
    """`--series`, `--sources`, ... one option per `Workload` field (shared with Locust)."""
    for f in fields(Workload):
        option = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {
            "type": type(f.default),
            "default": f.default,
            "help": f"workload {f.name} (default {f.default})",
        }
        if env_prefix is not None:
            kwargs["env_var"] = env_prefix + f.name.upper()
        parser.add_argument(option, **kwargs)


def workload_from(options: Any) -> Workload:
    return Workload(**{f.name: getattr(options, f.name) for f in fields(Workload)})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.seed", description=__doc__)
    parser.add_argument("--host", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--timeout", type=float, default=120.0)
    add_workload_arguments(parser)
    args = parser.parse_args(argv)
    try:
        seeded = seed(args.host, workload_from(args), timeout=args.timeout)
    except SeedError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"seeded snaps {[stamp(s) for s in seeded.snaps]}; as_of {stamp(seeded.as_of)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
