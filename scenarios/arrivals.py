"""Open-loop arrivals (``--shape rate``): when requests arrive, whatever the server does.

Pure functions of numbers (no Locust, no gevent): the arrival times of one load process's share of a
rate, and the loop that issues them against an injected clock, so both are unit-tested with a fake clock.

A rate of ``r`` requests/s is split over ``count`` load processes without gaps or double counting:

* ``constant``: the full stream is one request every ``1/r`` s from the stage's start; process ``index``
  takes every ``count``-th of them, from the ``index``-th on (``start + (index + k*count)/r``), so
  the processes interleave into exactly the full stream;
* ``poisson``: each process draws an independent Poisson stream of rate ``r/count`` (exponential gaps);
  independent Poisson streams superpose to a Poisson stream of the full rate ``r``.

Arrival times are absolute (unix seconds), never "sleep a gap after the last one": a late wake-up of
the process delays one request, not every later one, so the achieved rate holds the offered one.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Iterator

from ollama_locust.options import ARRIVALS  # the --arrival choices, declared once

POISSON, CONSTANT = ARRIVALS


class ArrivalError(ValueError):
    """An arrival option that cannot be used (one line)."""


def parse_rates(text: str) -> list[float]:
    """'0.5,1,2,4' -> [0.5, 1.0, 2.0, 4.0]; every rate a finite number > 0 (requests per second)."""
    rates: list[float] = []
    for part in str(text).split(","):
        try:
            rate = float(part.strip())
        except ValueError:
            rate = math.nan
        if not math.isfinite(rate) or rate <= 0:
            raise ArrivalError(f"rates must be numbers > 0 (requests per second) separated by commas (e.g. 0.5,1,2,4), got '{text}'")
        rates.append(rate)
    return rates


def share(total: int, index: int, count: int) -> int:
    """Process ``index``'s whole share of ``total`` (e.g. --max-in-flight) over ``count`` processes:
    the shares differ by at most one and add up to ``total``."""
    return total // count + (1 if index < total % count else 0)


def arrival_times(rate: float, kind: str, start: float, index: int = 0, count: int = 1,
                  rng: random.Random | None = None) -> Iterator[float]:
    """The arrival times (unix s, rising, endless) of process ``index`` of ``count`` for a stage offering
    ``rate`` requests/s in total from ``start`` on (see the module's docstring for the split)."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ArrivalError(f"the rate must be a number > 0 requests/s, got {rate!r}")
    if not 0 <= index < count:
        raise ArrivalError(f"process {index} of {count}: the index must be in 0..{count - 1}")
    if kind == CONSTANT:
        k = index
        while True:
            yield start + k / rate
            k += count
    elif kind == POISSON:
        rng = rng or random.Random()
        mine = rate / count
        t = start
        while True:
            t += rng.expovariate(mine)
            yield t
    else:
        raise ArrivalError(f"unknown arrival process {kind!r}; available: {', '.join(ARRIVALS)}")


def issue(times: Iterator[float], until: float, clock: Callable[[], float], sleep: Callable[[float], None],
          fire: Callable[[float], None]) -> int:
    """Call ``fire(t)`` for every arrival time ``t`` before ``until``, each once the clock has reached it
    (``sleep`` waits; a late wake-up fires the late arrivals at once, in order). Returns how many fired.
    The load side runs it with ``until`` = inf in a greenlet that the next stage kills."""
    fired = 0
    for t in times:
        if t >= until:
            break
        wait = t - clock()
        if wait > 0:
            sleep(wait)
        fire(t)
        fired += 1
    return fired


def stream_seed(seed: int, stage: int, index: int) -> int:
    """The seed of process ``index``'s arrival stream in stage ``stage`` from ``--arrival-seed`` (never 0): each
    stage and process draws its own stream, and the same seed gives the same streams on every run."""
    return (seed * 1_000_003 + stage * 1_009 + index) % (2 ** 32) or 1


def gaps_cv(times: list[float]) -> float:
    """Coefficient of variation (standard deviation / mean) of the gaps between sorted arrival times:
    about 1 for a Poisson stream, about 0 for a constant one; nan for fewer than 3 times."""
    ordered = sorted(times)
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    if len(gaps) < 2:
        return math.nan
    mean = sum(gaps) / len(gaps)
    if mean <= 0:
        return math.nan
    var = sum((g - mean) ** 2 for g in gaps) / (len(gaps) - 1)
    return math.sqrt(var) / mean
