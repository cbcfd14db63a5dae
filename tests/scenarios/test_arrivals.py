"""The open-loop arrival process (--shape rate) with a fake clock: CV, achieved rate, the split over workers."""

import math
import random

import pytest

from ollama_locust.scenarios import arrivals
from ollama_locust.scenarios.arrivals import CONSTANT, POISSON, arrival_times, gaps_cv, issue, parse_rates, share


class FakeClock:
    """A clock that sleep() advances; ``late`` adds a wake-up lateness to every sleep (a busy process)."""

    def __init__(self, now=1000.0, late=lambda: 0.0):
        self.now, self.late = now, late
        self.slept = 0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept += 1
        self.now += seconds + self.late()


def run(rate, kind, seconds, index=0, count=1, seed=1, late=lambda: 0.0, start=1000.0):
    clock = FakeClock(start, late)
    fired = []
    times = arrival_times(rate, kind, start, index, count, random.Random(seed))
    issue(times, start + seconds, clock, clock.sleep, lambda t: fired.append((t, clock())))
    return fired


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_poisson_cv_near_one_and_rate_held(seed):
    fired = run(10.0, POISSON, 100.0, seed=seed)
    times = [t for t, _ in fired]
    assert len(times) >= 500
    assert 0.9 <= gaps_cv(times) <= 1.1
    assert len(times) / 100.0 == pytest.approx(10.0, rel=0.1)  # 1000 arrivals: sd ~3 %


def test_constant_cv_zero_and_exact_count():
    fired = run(4.0, CONSTANT, 150.0)
    times = [t for t, _ in fired]
    assert len(times) == 600
    assert gaps_cv(times) == pytest.approx(0.0, abs=1e-9)
    assert times[0] == 1000.0 and times[1] - times[0] == pytest.approx(0.25)


def test_fired_when_the_clock_reaches_each_arrival():
    for t, now in run(5.0, POISSON, 20.0):
        assert now == pytest.approx(t)


def test_late_wake_ups_delay_one_arrival_not_the_rate():
    """A busy process wakes 0-30 ms late: every arrival still fires once, in order, and the count (the
    achieved rate) is the one asked for — the schedule is absolute, lateness does not accumulate."""
    jitter = random.Random(7)
    fired = run(20.0, CONSTANT, 50.0, late=lambda: jitter.uniform(0, 0.03))
    assert len(fired) == 1000
    lateness = [now - t for t, now in fired]
    assert min(lateness) >= 0 and max(lateness) <= 0.03 + 1e-9
    assert [t for t, _ in fired] == sorted(t for t, _ in fired)


@pytest.mark.parametrize("count", [2, 3])
def test_constant_split_over_workers_interleaves_exactly(count):
    full = [t for t, _ in run(3.0, CONSTANT, 60.0)]
    parts = [t for i in range(count) for t, _ in run(3.0, CONSTANT, 60.0, index=i, count=count)]
    assert sorted(parts) == pytest.approx(full)  # no gap, no double
    assert len(set(round(t, 9) for t in parts)) == len(parts)
    assert gaps_cv(parts) == pytest.approx(0.0, abs=1e-9)


def test_poisson_split_superposes_to_the_full_rate():
    parts = [t for i in range(2) for t, _ in run(8.0, POISSON, 100.0, index=i, count=2, seed=10 + i)]
    assert len(parts) / 100.0 == pytest.approx(8.0, rel=0.1)
    assert 0.9 <= gaps_cv(parts) <= 1.1
    one = [t for t, _ in run(8.0, POISSON, 100.0, index=0, count=2, seed=10)]
    assert len(one) / 100.0 == pytest.approx(4.0, rel=0.15)  # each process: rate / count


def test_share_splits_without_remainder_lost():
    for total in (1, 7, 100, 1000):
        for count in (1, 2, 3, 4):
            shares = [share(total, i, count) for i in range(count)]
            assert sum(shares) == total and max(shares) - min(shares) <= 1


def test_parse_rates_and_errors():
    assert parse_rates("0.5, 1,2,4") == [0.5, 1.0, 2.0, 4.0]
    for bad in ("", "1,,2", "0", "-1", "x", "inf", "nan"):
        with pytest.raises(arrivals.ArrivalError):
            parse_rates(bad)
    with pytest.raises(arrivals.ArrivalError):
        next(arrival_times(1.0, "bursty", 0.0))
    with pytest.raises(arrivals.ArrivalError):
        next(arrival_times(0.0, POISSON, 0.0))
    with pytest.raises(arrivals.ArrivalError):
        next(arrival_times(1.0, POISSON, 0.0, index=2, count=2))
    assert math.isnan(gaps_cv([1.0, 2.0]))


def test_seeded_streams_repeat_and_differ_by_stage_and_process():
    from ollama_locust.scenarios.arrivals import stream_seed

    def first(seed, stage, index):
        times = arrival_times(5.0, POISSON, 0.0, index, 2, random.Random(stream_seed(seed, stage, index)))
        return [next(times) for _ in range(5)]

    assert first(7, 0, 0) == first(7, 0, 0)
    assert first(7, 0, 0) != first(7, 0, 1) and first(7, 0, 0) != first(7, 1, 0) and first(7, 0, 0) != first(8, 0, 0)
    assert all(stream_seed(s, st, i) > 0 for s in (1, 2**31) for st in (0, 5) for i in (0, 3))
