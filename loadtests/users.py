"""Locust users (FastHttpUser), one class per kind of client of the API.

| class                    | requests                                               | weight |
|--------------------------|--------------------------------------------------------|--------|
| SingleObservationUser    | POST /v1/observations with 1 observation                | 20     |
| BatchObservationUser     | POST /v1/observations with `--batch-size` observations  | 5      |
| OfficialValueReader      | GET official value: latest 6, version=1 2, as_of 2      | 45     |
| HistoryReader            | GET history: raw page of 100 3, 1h buckets over a day 1 | 15     |
| QualityReader            | GET quality: window 1h or 1d                            | 15     |

Each user runs `--user-rps` tasks per second (constant throughput: a slow server lowers
the rate, as real clients waiting on responses do). Reads pick the series with the Zipf
sampler and a seeded snap uniformly. Request names are route templates plus the variant,
so the statistics have one row per kind of request. Weights can be changed per class with
Locust's own `--config-users` or `-u`/class arguments.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from locust import FastHttpUser, constant_throughput, task

from loadtests.auth import auth_headers
from loadtests.context import current
from loadtests.data import stamp

OFFICIAL = "/v1/reference-data/{id}/official-values/{snap}"
HISTORY = "/v1/reference-data/{id}/official-values"
QUALITY = "/v1/reference-data/{id}/quality"


class QisUser(FastHttpUser):
    abstract = True
    network_timeout = 10.0
    connection_timeout = 5.0

    def wait_time(self) -> float:
        return constant_throughput(current().user_rps)(self)

    def __init__(self, environment: Any) -> None:
        # The auth hook, asked once per simulated user (a hook may hand out fresh tokens):
        # its headers become the defaults of every request of this user.
        self.default_headers = {**(self.default_headers or {}), **auth_headers()}
        super().__init__(environment)

    def _series_and_snap(self) -> tuple[str, datetime]:
        context = current()
        seeded = context.readable()
        series = context.workload.series_id(context.zipf())
        return series, context.rng.choice(seeded.snaps)

    def _get(self, path: str, name: str, expect: str) -> None:
        with self.client.get(path, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
            elif expect not in (response.text or ""):
                response.failure(f"200 without {expect!r}")
            else:
                response.success()


class _Ingestion(QisUser):
    abstract = True

    def _post(self, count: int, name: str) -> None:
        items = current().plan.take(count, datetime.now(UTC))
        body = json.dumps({"observations": items})
        with self.client.post(
            "/v1/observations",
            data=body,
            headers={"Content-Type": "application/json"},
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 202:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
            elif f'"accepted":{len(items)}' not in (response.text or ""):
                response.failure("202 without every observation accepted")
            else:
                response.success()


class SingleObservationUser(_Ingestion):
    weight = 20

    @task
    def post_one(self) -> None:
        self._post(1, "/v1/observations [single]")


class BatchObservationUser(_Ingestion):
    weight = 5

    @task
    def post_batch(self) -> None:
        self._post(current().workload.batch_size, "/v1/observations [batch]")


class OfficialValueReader(QisUser):
    weight = 45

    def _path(self, query: dict[str, Any] | None = None) -> tuple[str, str]:
        series, snap = self._series_and_snap()
        path = f"/v1/reference-data/{series}/official-values/{stamp(snap)}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return path, series

    @task(6)
    def latest(self) -> None:
        path, series = self._path()
        self._get(path, f"{OFFICIAL} [latest]", series)

    @task(2)
    def by_version(self) -> None:
        path, series = self._path({"version": 1})
        self._get(path, f"{OFFICIAL} [version]", series)

    @task(2)
    def as_of(self) -> None:
        context = current()
        at = context.readable().as_of + timedelta(seconds=context.rng.randrange(60))
        path, series = self._path({"as_of": stamp(at)})
        self._get(path, f"{OFFICIAL} [as_of]", series)


class HistoryReader(QisUser):
    weight = 15

    @task(3)
    def raw_page(self) -> None:
        context = current()
        snaps = context.readable().snaps
        series = context.workload.series_id(context.zipf())
        query = {
            "from": stamp(snaps[0]),
            "to": stamp(snaps[-1] + timedelta(seconds=1)),
            "limit": 100,
        }
        path = f"/v1/reference-data/{series}/official-values?{urllib.parse.urlencode(query)}"
        self._get(path, f"{HISTORY} [raw]", '"items"')

    @task(1)
    def hourly_over_a_day(self) -> None:
        context = current()
        end = context.readable().snaps[-1].replace(minute=0, second=0) + timedelta(hours=1)
        series = context.workload.series_id(context.zipf())
        query = {"from": stamp(end - timedelta(days=1)), "to": stamp(end), "granularity": "1h"}
        path = f"/v1/reference-data/{series}/official-values?{urllib.parse.urlencode(query)}"
        self._get(path, f"{HISTORY} [1h]", '"items"')


class QualityReader(QisUser):
    weight = 15

    @task
    def quality(self) -> None:
        context = current()
        series = context.workload.series_id(context.zipf())
        window = context.rng.choice(("1h", "1d"))
        self._get(
            f"/v1/reference-data/{series}/quality?window={window}",
            f"{QUALITY} [window]",
            '"average_score"',
        )
