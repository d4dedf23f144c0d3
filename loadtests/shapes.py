"""Load shapes: constant, ramp, step, spike and soak, chosen with `--shape` at run time.

`profile(spec, t)` is the whole logic: the (users, spawn rate) a shape wants `t` seconds
into the run, or None when the run is over. The locustfile's `QisShape` is the one
`LoadTestShape` Locust sees; it reads `--shape`, `-u` (peak users), `-r` and `-t`
(duration) from the parsed options on its first tick (they are parsed after the
locustfile is imported, so the shape cannot be picked at import time). This module does
not import Locust (importing it monkey-patches the process with gevent), so it is
unit-tested like any pure code.

| shape    | users over the duration D (peak U)                                  | default D |
|----------|---------------------------------------------------------------------|-----------|
| constant | U from the start (at spawn rate -r), until D or Ctrl-C               | none      |
| ramp     | linear from 1 to U over D                                            | 10 min    |
| step     | `--steps` equal steps up to U, each D / steps long                    | 10 min    |
| spike    | U/5 for 40 % of D, U for the next 20 %, U/5 again for the last 40 %  | 10 min    |
| soak     | U reached within min(60 s, D/10), then held until D                  | 4 h       |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["constant", "ramp", "step", "spike", "soak"]
KINDS: tuple[Kind, ...] = ("constant", "ramp", "step", "spike", "soak")
DEFAULT_SECONDS: dict[Kind, float | None] = {
    "constant": None,
    "ramp": 600.0,
    "step": 600.0,
    "spike": 600.0,
    "soak": 4 * 3600.0,
}


@dataclass(frozen=True)
class ShapeSpec:
    kind: Kind
    users: int
    spawn_rate: float
    seconds: float | None = None
    steps: int = 5

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown shape {self.kind!r}; one of {', '.join(KINDS)}")
        if self.users < 1 or self.spawn_rate <= 0 or self.steps < 1:
            raise ValueError("users, spawn rate and steps must be positive")

    @property
    def duration(self) -> float | None:
        return self.seconds if self.seconds is not None else DEFAULT_SECONDS[self.kind]


def profile(spec: ShapeSpec, t: float) -> tuple[int, float] | None:
    """Users and spawn rate wanted at `t` seconds; None once the shape is over."""
    duration = spec.duration
    if duration is not None and t >= duration:
        return None
    peak, rate = spec.users, spec.spawn_rate
    if spec.kind == "constant" or duration is None:
        return peak, rate
    if spec.kind == "ramp":
        users = max(1, math.ceil(peak * t / duration))
        return users, max(rate, peak / duration)
    if spec.kind == "step":
        step = min(spec.steps - 1, int(t // (duration / spec.steps)))
        return max(1, math.ceil(peak * (step + 1) / spec.steps)), max(rate, peak / spec.steps)
    if spec.kind == "spike":
        base = max(1, peak // 5)
        in_spike = 0.4 * duration <= t < 0.6 * duration
        return (peak if in_spike else base), max(rate, float(peak))  # the spike is abrupt
    # soak
    ramp = min(60.0, duration / 10)
    return (max(1, math.ceil(peak * t / ramp)) if t < ramp else peak), max(rate, peak / ramp)


def spec_from_options(options: Any) -> ShapeSpec:
    """The spec from Locust's parsed options (`--shape`, `-u`, `-r`, `-t`, `--steps`)."""
    run_time = getattr(options, "run_time", None)
    return ShapeSpec(
        kind=getattr(options, "shape", None) or "constant",
        users=int(getattr(options, "num_users", None) or 10),
        spawn_rate=float(getattr(options, "spawn_rate", None) or 1.0),
        seconds=float(run_time) if run_time else None,
        steps=int(getattr(options, "steps", None) or 5),
    )
