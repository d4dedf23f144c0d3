"""Load shapes: users and spawn rate over time for each shape."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from loadtests.shapes import ShapeSpec, profile, spec_from_options


def users(spec: ShapeSpec, *times: float) -> list[int | None]:
    return [None if (p := profile(spec, t)) is None else p[0] for t in times]


def test_constant_holds_until_the_duration_or_forever() -> None:
    assert users(ShapeSpec("constant", 40, 10, seconds=60), 0, 59.9, 60) == [40, 40, None]
    assert users(ShapeSpec("constant", 40, 10), 0, 1e6) == [40, 40]


def test_ramp_rises_linearly_to_the_peak() -> None:
    spec = ShapeSpec("ramp", 100, 1, seconds=100)

    assert users(spec, 0, 25, 50, 99, 100) == [1, 25, 50, 99, None]
    assert profile(spec, 10) == (10, 1.0)


def test_step_climbs_in_equal_steps() -> None:
    spec = ShapeSpec("step", 100, 5, seconds=500, steps=4)

    assert users(spec, 0, 124, 125, 250, 499, 500) == [25, 25, 50, 75, 100, None]


def test_spike_jumps_to_the_peak_in_the_middle_fifth() -> None:
    spec = ShapeSpec("spike", 100, 5, seconds=100)

    assert users(spec, 0, 39, 40, 59, 60, 99) == [20, 20, 100, 100, 20, 20]
    assert profile(spec, 40) == (100, 100.0)  # the spike arrives at once


def test_soak_reaches_the_peak_within_a_minute_then_holds_for_hours() -> None:
    spec = ShapeSpec("soak", 60, 1)

    assert spec.duration == 4 * 3600
    assert users(spec, 0, 30, 60, 3 * 3600, 4 * 3600) == [1, 30, 60, 60, None]


def test_the_spec_comes_from_locusts_common_options() -> None:
    options = SimpleNamespace(shape="step", num_users=200, spawn_rate=20, run_time=900, steps=3)

    assert spec_from_options(options) == ShapeSpec("step", 200, 20.0, 900.0, 3)
    assert spec_from_options(None) == ShapeSpec("constant", 10, 1.0, None, 5)


def test_unknown_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        ShapeSpec("sawtooth", 10, 1)  # type: ignore[arg-type]
