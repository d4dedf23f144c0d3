"""Locust users, one class per kind of client of the API, all calling it through the typed
client (`qis_client.QisClient`, client/), so the client is exercised by every load run.

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

Each call is one request: the client's retries are off (`NO_RETRY`), so a 503 or a
timeout is counted as the failure it is instead of being hidden by a retry. A call
fails when the client raises (any non-2xx answer, as a typed problem, or no answer) or
when the decoded answer is not the one asked for (another series, fewer accepted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import msgspec
from locust import User, constant_throughput, task
from qis_client import NO_RETRY, QisClient, QisError, SubmittedObservation

from loadtests.auth import auth_headers, bearer_auth
from loadtests.context import current

OFFICIAL = "/v1/reference-data/{id}/official-values/{snap}"
HISTORY = "/v1/reference-data/{id}/official-values"
QUALITY = "/v1/reference-data/{id}/quality"
T = TypeVar("T")


class WrongAnswer(Exception):
    """A 2xx whose body is not what the request asked for."""


class QisUser(User):
    abstract = True

    def wait_time(self) -> float:
        return constant_throughput(current().user_rps)(self)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        # The auth hook, asked once per simulated user (a hook may hand out fresh tokens):
        # its headers go with every request of this user. With client credentials
        # (LOADTEST_AUTH_TOKEN_URL) the client asks the shared provider for each request's
        # token instead, so tokens are refreshed before they expire and after a 401.
        shared = bearer_auth()
        self.qis = QisClient(
            self.host or "",
            token=shared,
            headers={} if shared is not None else auth_headers(),
            retry=NO_RETRY,
            timeout=httpx.Timeout(10.0, connect=5.0),
        )

    def on_stop(self) -> None:
        self.qis.close()

    def _series_and_snap(self) -> tuple[str, datetime]:
        context = current()
        seeded = context.readable()
        series = context.workload.series_id(context.zipf())
        return series, context.rng.choice(seeded.snaps)

    def _timed(
        self, method: str, name: str, call: Callable[[], T], check: Callable[[T], str]
    ) -> None:
        """Run one client call, report it to Locust's statistics under `name`."""
        started = time.perf_counter()
        exception: Exception | None = None
        try:
            result = call()
        except QisError as exc:
            exception = exc
        else:
            wrong = check(result)
            if wrong:
                exception = WrongAnswer(wrong)
        self.environment.events.request.fire(
            request_type=method,
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=0,
            exception=exception,
            context={},
        )


def _about(series: str) -> Callable[[Any], str]:
    return lambda answer: "" if answer.reference_data_id == series else "another series"


class _Ingestion(QisUser):
    abstract = True

    def _post(self, count: int, name: str) -> None:
        items = msgspec.convert(
            current().plan.take(count, datetime.now(UTC)), list[SubmittedObservation]
        )
        if not items:
            return
        self._timed(
            "POST",
            name,
            lambda: self.qis.post_observations(items),
            lambda r: "" if r.accepted == len(items) else "not every observation accepted",
        )


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

    def _read(self, variant: str, **query: Any) -> None:
        series, snap = self._series_and_snap()
        self._timed(
            "GET",
            f"{OFFICIAL} [{variant}]",
            lambda: self.qis.official_value(series, snap, **query),
            _about(series),
        )

    @task(6)
    def latest(self) -> None:
        self._read("latest")

    @task(2)
    def by_version(self) -> None:
        self._read("version", version=1)

    @task(2)
    def as_of(self) -> None:
        context = current()
        at = context.readable().as_of + timedelta(seconds=context.rng.randrange(60))
        self._read("as_of", as_of=at)


class HistoryReader(QisUser):
    weight = 15

    @task(3)
    def raw_page(self) -> None:
        context = current()
        snaps = context.readable().snaps
        series = context.workload.series_id(context.zipf())
        self._timed(
            "GET",
            f"{HISTORY} [raw]",
            lambda: self.qis.history_page(
                series, snaps[0], snaps[-1] + timedelta(seconds=1), limit=100
            ),
            lambda page: "",
        )

    @task(1)
    def hourly_over_a_day(self) -> None:
        context = current()
        end = context.readable().snaps[-1].replace(minute=0, second=0) + timedelta(hours=1)
        series = context.workload.series_id(context.zipf())
        self._timed(
            "GET",
            f"{HISTORY} [1h]",
            lambda: self.qis.history_page(series, end - timedelta(days=1), end, granularity="1h"),
            lambda page: "",
        )


class QualityReader(QisUser):
    weight = 15

    @task
    def quality(self) -> None:
        context = current()
        series = context.workload.series_id(context.zipf())
        window = context.rng.choice(("1h", "1d"))
        self._timed(
            "GET",
            f"{QUALITY} [window]",
            lambda: self.qis.quality(series, window=window),
            _about(series),
        )
