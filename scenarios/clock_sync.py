"""Each worker's clock offset from the master's, measured over Locust's own message channel (issue 17).

Records are stamped on the workers (``start_time`` is the worker's wall clock) and assigned to stages on
the master's timeline, so a worker whose clock is off puts requests into the wrong step. The master
measures every worker NTP-style in rounds of ``ROUNDS`` pings — soon after it joins (``JOIN_ROUNDS_AT``:
a worker that has just joined is busy for a moment and answers late) and then every ``EVERY_S`` seconds.
Each ping is ``t0`` (master) -> ``tw`` (worker) -> ``t3`` (master); offset = ``tw - (t0 + t3) / 2``,
uncertainty = ``(t3 - t0) / 2``. The sample with the shortest round trip wins, unless the one kept is
older than ``STALE_S`` (clocks drift), so one late round never replaces a good measurement. The master subtracts the
worker's offset from its records' and samples' times before anything else sees them.

Pure bookkeeping here; the plugin sends the messages (``llm_clock_ping`` / ``llm_clock_pong``).
"""

from __future__ import annotations

import time

PING, PONG = "llm_clock_ping", "llm_clock_pong"
ROUNDS = 5
JOIN_ROUNDS_AT = (1.0, 2.5, 5.0, 10.0)  # seconds after a worker joins
EVERY_S = 30.0
STALE_S = 120.0
GAP_S = 0.02  # between the pings of a round


def pong(ping: dict, worker: str, clock=time.time) -> dict:
    """The worker's answer to a ping: the ping's own fields, its name and its clock."""
    return {**ping, "worker": worker, "worker_time": clock()}


class ClockOffsets:
    """On the master: the best offset measured for each worker (by its records' ``worker`` name)."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self.offsets: dict[str, dict] = {}  # worker -> {"offset_s", "uncertainty_s", "measured_at", "rounds"}
        self._round = 0

    def ping(self) -> dict:
        return {"round": self._round, "t0": self.clock()}

    def new_round(self) -> None:
        self._round += 1

    def on_pong(self, data: dict) -> bool:
        """Note one answer; True when it changed the worker's offset."""
        t3 = self.clock()
        try:
            worker, t0, tw = str(data["worker"]), float(data["t0"]), float(data["worker_time"])
        except (KeyError, TypeError, ValueError):
            return False
        delay = max(0.0, t3 - t0)
        sample = {"offset_s": tw - (t0 + t3) / 2.0, "uncertainty_s": delay / 2.0, "measured_at": t3,
                  "round": data.get("round")}
        current = self.offsets.get(worker)
        rounds = {*(current or {}).get("rounds_seen", ()), sample["round"]}
        if current is not None and current["uncertainty_s"] <= sample["uncertainty_s"] \
                and t3 - current["measured_at"] < STALE_S:
            current["rounds_seen"] = rounds
            return False
        self.offsets[worker] = {**sample, "rounds_seen": rounds}
        return True

    def offset(self, worker: str | None) -> float:
        """The worker's offset, or 0 while it is within its own uncertainty (indistinguishable from none)."""
        entry = self.offsets.get(worker or "")
        if not entry or abs(entry["offset_s"]) <= entry["uncertainty_s"]:
            return 0.0
        return entry["offset_s"]

    def correct(self, record: dict, key: str = "start_time") -> dict:
        """The record with its worker's offset taken out of ``key`` (a worker clock ahead reads later)."""
        offset = self.offset(record.get("worker"))
        value = record.get(key)
        if offset and isinstance(value, (int, float)):
            record[key] = value - offset
        return record

    def summary(self) -> dict:
        """For run.json: worker -> offset and uncertainty in ms."""
        return {worker: {"offset_ms": round(entry["offset_s"] * 1000.0, 3),
                         "uncertainty_ms": round(entry["uncertainty_s"] * 1000.0, 3),
                         "measured_at": round(entry["measured_at"], 3), "rounds": len(entry["rounds_seen"])}
                for worker, entry in sorted(self.offsets.items())}
