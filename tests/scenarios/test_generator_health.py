"""The load process's own health samples and the workers' clock offsets (issue 17), on fake clocks."""

from __future__ import annotations

import csv

from ollama_locust import contract, stats
from ollama_locust.scenarios.clock_sync import ClockOffsets, pong
from ollama_locust.scenarios.generator_health import HealthLog, HealthSampler


class Clocks:
    def __init__(self):
        self.mono, self.cpu = 100.0, 5.0

    def monotonic(self):
        return self.mono

    def cpu_clock(self):
        return self.cpu


def sampler(clocks: Clocks) -> HealthSampler:
    return HealthSampler("host-1", users=lambda: 7, clock=lambda: 1000.0 + clocks.mono, monotonic=clocks.monotonic,
                         cpu_clock=clocks.cpu_clock, connections=lambda: 3)


def test_a_second_of_ticks_makes_one_sample():
    clocks = Clocks()
    health = sampler(clocks)
    health.tick(0.0)
    for lag_ms in [1.0] * 8 + [30.0, 2.0]:
        clocks.mono += 0.1
        clocks.cpu += 0.05  # half a core
        health.tick(lag_ms / 1000)
    [sample] = health.drain()
    assert sample["worker"] == "host-1" and sample["users"] == 7 and sample["connections"] == 3
    assert abs(sample["cpu"] - 0.5) < 1e-3 and abs(sample["interval_s"] - 1.0) < 1e-6
    assert sample["lag_max_ms"] == 30.0
    assert abs(sample["lag_p99_ms"] - stats.percentile(sorted([0.0] + [1.0] * 8 + [30.0, 2.0]), 99)) < 1e-6
    assert health.drain() == []


def test_the_limits_and_their_wording():
    assert stats.generator_breaches(0.5, 2.0) == []
    [cpu] = stats.generator_breaches(0.97, None)
    assert "97.0 % of a core" in cpu
    [lag] = stats.generator_breaches(None, 45.0)
    assert "45 ms late at p99" in lag


def test_the_log_writes_generator_csv_and_warns(tmp_path):
    path = tmp_path / contract.GENERATOR_FILE
    log = HealthLog(str(path))
    log.add_many([{"worker": "a", "time": 1.0, "interval_s": 1.0, "cpu": 0.3, "lag_p99_ms": 1.0, "lag_max_ms": 2.0,
                   "connections": None, "users": 2}])
    assert log.warning() is None
    log.add_many([{"worker": "b", "time": 1.0, "interval_s": 1.0, "cpu": 0.99, "lag_p99_ms": 1.0, "lag_max_ms": 2.0,
                   "connections": 4, "users": 900}])
    assert "load generator saturated (b:" in log.warning()
    log.close()
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    assert [r["worker"] for r in rows] == ["a", "b"] and rows[0]["connections"] == ""
    assert list(rows[0]) == list(contract.GENERATOR_COLUMN_NAMES)


def test_clock_offset_from_the_fastest_round_trip():
    master = {"now": 50.0}
    offsets = ClockOffsets(clock=lambda: master["now"])
    offsets.new_round()
    worker_ahead = 0.5
    for delay in (0.040, 0.004, 0.020):  # the 4 ms round trip is the one to trust
        ping = offsets.ping()
        master["now"] += delay / 2
        answer = pong(ping, "w-1", clock=lambda: master["now"] + worker_ahead)
        master["now"] += delay / 2
        offsets.on_pong(answer)
        master["now"] += 1.0
    entry = offsets.summary()["w-1"]
    assert abs(entry["offset_ms"] - 500.0) < 1e-6 and abs(entry["uncertainty_ms"] - 2.0) < 1e-6
    record = offsets.correct({"worker": "w-1", "start_time": 100.5})
    assert abs(record["start_time"] - 100.0) < 1e-9
    assert offsets.correct({"worker": "other", "start_time": 7.0})["start_time"] == 7.0


def test_an_offset_within_its_uncertainty_is_no_offset():
    master = {"now": 10.0}
    offsets = ClockOffsets(clock=lambda: master["now"])
    ping = offsets.ping()
    answer = pong(ping, "w", clock=lambda: master["now"] + 0.001)
    master["now"] += 0.010  # a 10 ms round trip: +-5 ms; the 1 ms "offset" is noise
    offsets.on_pong(answer)
    assert offsets.offset("w") == 0.0
    assert offsets.on_pong({"worker": "w"}) is False  # a malformed answer is ignored


def test_the_connection_count_is_the_process_s_open_sockets():
    import socket

    from ollama_locust.scenarios.generator_health import connection_counter

    count = connection_counter()
    before = count()
    pair = socket.socketpair()
    try:
        assert count() == before + 2
    finally:
        for end in pair:
            end.close()
    assert count() == before
    assert connection_counter("/no/such/proc/self/fd")() is None
