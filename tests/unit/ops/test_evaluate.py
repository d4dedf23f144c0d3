"""CloudWatch's alarm state rules, as properties over every evaluation window."""

from __future__ import annotations

from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from alarms.evaluate import State, next_state
from ops.alarm import TreatMissingData

TREATMENTS: tuple[TreatMissingData, ...] = get_args(TreatMissingData)
STATES: tuple[State, ...] = get_args(State)

windows = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.integers(1, n),
        st.lists(st.sampled_from([True, False, None]), min_size=n + 2, max_size=n + 2),
    )
)


def decide(window: list[bool | None], m: int, n: int, treat: TreatMissingData, now: State) -> State:
    return next_state(
        window,
        datapoints_to_alarm=m,
        evaluation_periods=n,
        treat_missing_data=treat,
        current=now,
    )[0]


@given(windows, st.sampled_from(STATES))
def test_with_n_real_datapoints_the_treatment_does_not_matter(
    shape: tuple[int, int, list[bool | None]], now: State
) -> None:
    n, m, window = shape
    if sum(b is not None for b in window) >= n:
        assert len({decide(window, m, n, t, now) for t in TREATMENTS}) == 1


@given(windows, st.sampled_from(STATES))
def test_breaching_fills_never_give_a_better_state_than_not_breaching(
    shape: tuple[int, int, list[bool | None]], now: State
) -> None:
    n, m, window = shape
    if decide(window, m, n, "notBreaching", now) == "ALARM":
        assert decide(window, m, n, "breaching", now) == "ALARM"
    if decide(window, m, n, "breaching", now) == "OK":
        assert decide(window, m, n, "notBreaching", now) == "OK"


@given(windows, st.sampled_from(STATES))
def test_only_missing_gives_insufficient_data_and_only_ignore_depends_on_the_past(
    shape: tuple[int, int, list[bool | None]], now: State
) -> None:
    n, m, window = shape
    filling: tuple[TreatMissingData, ...] = ("breaching", "notBreaching")
    for treat in filling:
        assert decide(window, m, n, treat, now) in ("OK", "ALARM")
    for treat in (*filling, "missing"):
        assert decide(window, m, n, treat, now) == decide(window, m, n, treat, "OK")
    if decide(window, m, n, "ignore", now) == "INSUFFICIENT_DATA":
        assert now == "INSUFFICIENT_DATA"


@given(windows)
def test_m_breaching_real_datapoints_always_alarm(
    shape: tuple[int, int, list[bool | None]],
) -> None:
    n, m, window = shape
    recent = [b for b in window if b is not None][-n:]
    if sum(b is True for b in recent) >= m:
        assert all(decide(window, m, n, t, "OK") == "ALARM" for t in TREATMENTS)
