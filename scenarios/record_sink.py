"""Request records on their way to ``requests.csv``.

* :class:`RecordBuffer` — on a worker: records wait here until they are shipped to the master
  (every second, and once more with Locust's final report), as plain dicts (msgpack-safe).
* :class:`RecordSink` — on the master or in a single-process run: stamps each record with the stage
  in which it started (from the :class:`~scenarios.timeline.StageTimeline`), appends it to
  ``requests.csv`` (flushed at least every second by the caller's timer, so a crash loses at most the
  last second), and keeps per-stage tallies for the live progress line and ``--stop-on-failure``.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field

from ollama_locust import contract, stats
from ollama_locust.scenarios.timeline import StageTimeline


class RecordBuffer:
    def __init__(self) -> None:
        self._records: list[dict] = []

    def add(self, record: dict) -> None:
        self._records.append(record)

    def drain(self) -> list[dict]:
        records, self._records = self._records, []
        return records

    def __len__(self) -> int:
        return len(self._records)


@dataclass
class StageTally:
    """What the master knows of one stage so far (records that count: not settle, not cut short)."""

    outcomes: Counter = field(default_factory=Counter)
    ok_e2e_ms: list = field(default_factory=list)
    ttft_ms: list = field(default_factory=list)
    output_tokens: int = 0
    settle: int = 0

    @property
    def counted(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != contract.CUT_SHORT)

    @property
    def success_rate(self) -> float | None:
        return stats.success_rate(self.outcomes[contract.OK], self.counted)

    def fails(self, min_success: float, slo_p95_ms: float | None, slo_ttft_p95_ms: float | None = None) -> str | None:
        """Why this stage fails the thresholds, or None (``ollama_locust.stats.breaches``)."""
        p95 = stats.percentile(sorted(self.ok_e2e_ms), 95)
        ttft = stats.percentile(sorted(self.ttft_ms), 95) if slo_ttft_p95_ms else None
        return "; ".join(stats.breaches(self.success_rate, p95, min_success=min_success, slo_p95_ms=slo_p95_ms,
                                        ttft_p95_ms=ttft, slo_ttft_p95_ms=slo_ttft_p95_ms)) or None


def _cell(value, decimals: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{decimals}f}" if value == value else ""
    return str(value)


_DECIMALS = {name: (6 if name in ("start_time", "latency", "total_duration") else 3) for name in contract.COLUMN_NAMES}


class RecordSink:
    def __init__(self, path: str | None, timeline: StageTimeline):
        self.timeline = timeline
        self.tallies: dict[int, StageTally] = {}
        self.total = 0
        self._pending: list[dict] = []
        self.listeners: list = []  # callables(record) told of every stamped record (e.g. the web UI's live view)
        self._handle = None
        self._writer = None
        if path:
            new = not os.path.exists(path) or os.path.getsize(path) == 0
            self._handle = open(path, "a", newline="", encoding="utf-8")
            self._writer = csv.writer(self._handle)
            if new:
                self._writer.writerow(contract.COLUMN_NAMES)
                self._handle.flush()

    def add(self, record: dict) -> None:
        self.timeline.stamp(record)
        tally = self.tallies.setdefault(record["stage"], StageTally())
        outcome = record.get("outcome")
        if record["settle"]:
            tally.settle += 1
        else:
            tally.outcomes[outcome] += 1
            if outcome == contract.OK and record.get("e2e_ms") is not None:
                tally.ok_e2e_ms.append(record["e2e_ms"])
            if outcome == contract.OK and record.get("ttft_ms") is not None:
                tally.ttft_ms.append(record["ttft_ms"])
            tally.output_tokens += record.get("output_tokens") or 0
        self.total += 1
        self._pending.append(record)
        for listener in self.listeners:
            listener(record)

    def add_many(self, records: list[dict]) -> None:
        for record in records:
            self.add(record)

    def flush(self) -> None:
        if self._writer is None:
            self._pending.clear()
            return
        if self._pending:
            rows = [[_cell(record.get(name), _DECIMALS[name]) for name in contract.COLUMN_NAMES] for record in self._pending]
            self._pending.clear()
            self._writer.writerows(rows)
            self._handle.flush()

    def close(self) -> None:
        self.flush()
        if self._handle is not None:
            self._handle.close()
            self._handle = self._writer = None
