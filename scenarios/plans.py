"""Load plans as data: a list of stages, built from the options, and pure lookups over it.

A plan knows nothing of Locust: ``scenarios.shapes`` turns it into a LoadTestShape. Everything here is
a pure function of its arguments, so it is tested with plain numbers (no clock, no runner).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class PlanError(ValueError):
    """A load plan option that cannot be used (one line, says what to write instead)."""


@dataclass(frozen=True)
class Stage:
    users: int
    duration_s: float
    settle_s: float = 0.0
    kind: str = "step"
    spawn_rate: float = 0.0  # 0 = all at once
    rate: float | None = None  # a rate stage (--shape rate): offered requests/s, open loop (users is 0)


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """'90', '90s', '2m', '1m30s', '1h' -> seconds."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not str(text).strip() or not match or not any(match.groups()):
            raise PlanError(f"{what} must be a duration like 30s, 2m or 1m30s, got '{text}'")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds < 0:
        raise PlanError(f"{what} must not be negative, got '{text}'")
    return seconds


def parse_users(text: str) -> list[int]:
    """'1,3,5,10' -> [1, 3, 5, 10]; every count a whole number >= 1."""
    parts = [p.strip() for p in str(text).split(",")]
    counts: list[int] = []
    for part in parts:
        if not part.isdigit() or int(part) < 1:
            raise PlanError(f"user counts must be whole numbers >= 1 separated by commas (e.g. 1,3,5,10), got '{text}'")
        counts.append(int(part))
    return counts


def step_plan(users: list[int], step_time_s: float, settle_s: float = 0.0, spawn_rate: float = 0.0) -> list[Stage]:
    check_step(step_time_s, settle_s)
    return [Stage(n, step_time_s, settle_s, "step", spawn_rate) for n in users]


def burst_plan(base_users: int, burst_users: int, period_s: float, burst_s: float, bursts: int) -> list[Stage]:
    """A base load with ``bursts`` spikes: base for period - burst seconds, then base + burst users."""
    if burst_s >= period_s:
        raise PlanError(f"a burst ({burst_s:g} s) must be shorter than its period ({period_s:g} s)")
    stages: list[Stage] = []
    for _ in range(bursts):
        stages.append(Stage(base_users, period_s - burst_s, 0.0, "hold"))
        stages.append(Stage(base_users + burst_users, burst_s, 0.0, "burst"))
    return [s for s in stages if s.users > 0 or s.kind == "burst"]


def ramp_plan(users: list[int], step_time_s: float) -> list[Stage]:
    """From the first count to the last, one stage per count, each reached at an even spawn rate."""
    stages: list[Stage] = []
    previous = 0
    for count in users:
        rate = max(abs(count - previous) / step_time_s, 0.1)
        stages.append(Stage(count, step_time_s, 0.0, "ramp", rate))
        previous = count
    return stages


def rate_plan(rates: list[float], step_time_s: float, settle_s: float = 0.0) -> list[Stage]:
    """One open-loop stage per rate (requests/s), each held ``step_time_s``; no users (``users`` 0)."""
    check_step(step_time_s, settle_s)
    return [Stage(0, step_time_s, settle_s, "rate", 0.0, rate) for rate in rates]


def check_step(step_time_s: float, settle_s: float) -> None:
    if step_time_s <= 0:
        raise PlanError(f"step time must be more than 0 s, got {step_time_s:g}")
    if settle_s >= step_time_s:
        raise PlanError(f"settle ({settle_s:g} s) must be shorter than the step time ({step_time_s:g} s)")


PLAN_OPTIONS = ("shape", "steps", "step_time", "settle", "step_spawn_rate", "burst_period", "rates")


def build_plan(shape: str, steps: str, step_time: str | float, settle: str | float = 0.0,
               step_spawn_rate: float = 0.0, burst_period: float = 30.0, rates: str = "1") -> list[Stage] | None:
    """The plan of a ``--shape`` from its options (the names of ``PLAN_OPTIONS``); None for ``none``."""
    if shape == "none":
        return None
    step_s = parse_duration(step_time, "--step-time")
    if shape == "rate":
        from ollama_locust.scenarios.arrivals import ArrivalError, parse_rates

        try:
            parsed = parse_rates(rates)
        except ArrivalError as error:
            raise PlanError(f"--rates: {error}") from None
        return rate_plan(parsed, step_s, parse_duration(settle, "--settle"))
    users = parse_users(steps)
    if shape == "step":
        return step_plan(users, step_s, parse_duration(settle, "--settle"), step_spawn_rate)
    if shape == "ramp":
        return ramp_plan(users, step_s)
    base, burst = users[0], (users[1] if len(users) > 1 else users[0])
    return burst_plan(base, burst, burst_period, min(step_s, burst_period / 2), max(1, len(users)))


def total_duration(stages: list[Stage]) -> float:
    return sum(stage.duration_s for stage in stages)


def stage_index_at(stages: list[Stage], elapsed_s: float) -> int | None:
    """The stage running ``elapsed_s`` seconds into the plan, or None once the plan is over."""
    end = 0.0
    for index, stage in enumerate(stages):
        end += stage.duration_s
        if elapsed_s < end:
            return index
    return None
