"""Is the load generator itself keeping up? Every load process samples its own health (issue 17).

A :class:`HealthSampler` greenlet wakes every ``TICK_S`` (100 ms) and notes how late the wake-up came
(the gevent hub's lateness: a hub busy with other greenlets, or a process short of CPU, wakes late, and
then every timestamp the process takes is late too). Once a second it closes a sample:

* ``cpu`` — the process's CPU time over the wall time of the second (1.0 = one full core; a load
  process runs on one core, so near 1.0 it is saturated);
* ``lag_p99_ms`` / ``lag_max_ms`` — the wake-ups' lateness that second;
* ``connections`` — the process's open sockets (its users' connections); ``users`` — its running users.

Workers ship their samples to the master with the records; the master (or the single process) writes
them to ``generator.csv`` (columns in ``ollama_locust.contract.GENERATOR_COLUMNS``), and the report
judges each step by them (``ollama_locust.reports``). The sampler's own cost: one timer per 100 ms and
one connection count per second.
"""

from __future__ import annotations

import csv
import os
import time
from typing import Callable

from ollama_locust import contract, stats

TICK_S = 0.1
SAMPLE_EVERY_S = 1.0


def connection_counter(fd_dir: str = "/proc/self/fd") -> Callable[[], int | None]:
    """The process's open sockets: its file descriptors that are sockets (Linux's ``/proc/self/fd``), i.e.
    its users' connections plus a few of Locust's own (the master link, the web UI); None where ``/proc``
    cannot be read. 0.7 ms per count with 513 sockets open here. psutil's ``net_connections`` (TCP only)
    parsed the kernel's table of every socket on the machine: 6 ms per count on a quiet machine at 256
    users, 12-25 ms on a loaded one, a hub blocked once a second that dated a stream's token read then late."""
    if not os.path.isdir(fd_dir):
        return lambda: None

    def count() -> int | None:
        try:
            names = os.listdir(fd_dir)
        except OSError:
            return None
        sockets = 0
        for name in names:
            try:
                sockets += os.readlink(os.path.join(fd_dir, name)).startswith("socket:")
            except OSError:  # closed meanwhile (the listing's own descriptor among them)
                continue
        return sockets

    return count


class HealthSampler:
    """Samples of one load process; ``sleep``, ``clock`` and ``cpu_clock`` are injectable for tests."""

    def __init__(self, worker: str, users: Callable[[], int], sleep=None, clock=time.time,
                 monotonic=time.monotonic, cpu_clock=time.process_time, connections=None):
        self.worker = worker
        self.users = users
        self._sleep = sleep
        self.clock, self.monotonic, self.cpu_clock = clock, monotonic, cpu_clock
        self.connections = connections or connection_counter()
        self.samples: list[dict] = []
        self.latest: dict | None = None
        self._lags: list[float] = []
        self._start = self._cpu = None

    def tick(self, lag_s: float) -> None:
        """One wake-up, ``lag_s`` late; closes a sample once a second has passed."""
        self._lags.append(max(0.0, lag_s) * 1000.0)
        now, cpu = self.monotonic(), self.cpu_clock()
        if self._start is None:
            self._start, self._cpu = now, cpu
            return
        elapsed = now - self._start
        if elapsed + 1e-6 < SAMPLE_EVERY_S:
            return
        lags = sorted(self._lags)
        sample = {"worker": self.worker, "time": self.clock(), "interval_s": round(elapsed, 4),
                  "cpu": round((cpu - self._cpu) / elapsed, 4), "lag_p99_ms": round(stats.percentile(lags, 99), 3),
                  "lag_max_ms": round(lags[-1], 3), "connections": self.connections(), "users": self.users()}
        self.samples.append(sample)
        self.latest = sample
        self._lags, self._start, self._cpu = [], now, cpu

    def drain(self) -> list[dict]:
        samples, self.samples = self.samples, []
        return samples

    def run(self) -> None:
        """The greenlet: sleep TICK_S, note how late the wake-up was, forever."""
        import gevent

        sleep = self._sleep or gevent.sleep
        while True:
            due = self.monotonic() + TICK_S
            sleep(TICK_S)
            self.tick(self.monotonic() - due)


class HealthLog:
    """On the master (or the single process): ``generator.csv``, appended as samples arrive, and the
    latest sample of each load process for the live progress line. A write error (a full disk) keeps the
    samples pending and says so (``flush`` returns False, ``write_error``); it never raises."""

    def __init__(self, path: str | None):
        self.latest: dict[str, dict] = {}
        self._pending: list[list] = [list(contract.GENERATOR_COLUMN_NAMES)] if path else []
        self.write_error: str | None = None
        self._handle = None
        if path:
            try:
                self._handle = open(path, "w", newline="", encoding="utf-8")
            except OSError as error:
                self.write_error = error.strerror or str(error)
        self.flush()

    def add_many(self, samples) -> None:
        for sample in samples or ():
            if isinstance(sample, dict):
                self._pending.append(["" if sample.get(name) is None else sample.get(name)
                                      for name in contract.GENERATOR_COLUMN_NAMES])
                self.latest[str(sample.get("worker"))] = sample

    def warning(self) -> str | None:
        """One line while a load process cannot keep up, from the latest samples."""
        for worker, sample in sorted(self.latest.items()):
            reasons = stats.generator_breaches(sample.get("cpu"), sample.get("lag_p99_ms"))
            if reasons:
                return f"load generator saturated ({worker}: {'; '.join(reasons)}): add --workers"
        return None

    def flush(self) -> bool:
        """Write the pending rows; True when all are written (False: kept for the next try)."""
        if self._handle is None:
            self._pending.clear()
            return self.write_error is None
        if not self._pending:
            return True
        import io

        text = io.StringIO()
        csv.writer(text).writerows(self._pending)
        try:
            self._handle.write(text.getvalue())
            self._handle.flush()
        except OSError as error:
            self.write_error = error.strerror or str(error)
            return False
        self._pending.clear()
        return True

    def close(self) -> None:
        self.flush()
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:
                pass
            self._handle = None
