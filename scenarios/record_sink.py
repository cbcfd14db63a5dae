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
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from ollama_locust import contract, stats
from ollama_locust.scenarios.timeline import StageTimeline

FLUSH_BATCH = 64  # rows per write when the flush pauses between batches (RecordSink.flush)


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
    """What the master knows of one stage so far (records that count: not settle, not cut short or dropped)."""

    outcomes: Counter = field(default_factory=Counter)
    ok_e2e_ms: list = field(default_factory=list)
    ttft_ms: list = field(default_factory=list)
    output_tokens: int = 0
    settle: int = 0

    @property
    def counted(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome not in contract.NOT_JUDGED)

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
    """Stamps, tallies and appends records to ``requests.csv``.

    Pending rows are cleared only once they are written: a write error (a full disk) truncates the file
    back to its last whole row, keeps the rows in memory to retry at the next flush, and is kept in
    ``write_error``; ``unwritten`` says how many records are not in the file.
    """

    def __init__(self, path: str | None, timeline: StageTimeline):
        self.timeline = timeline
        self.tallies: dict[int, StageTally] = {}
        self.total = 0
        self.path = path
        self._pending: list[dict] = []
        self.listeners: list = []  # callables(record) told of every stamped record (e.g. the web UI's live view)
        self.write_error: str | None = None  # the last write failure (e.g. "No space left on device"), None when fine
        self._fd: int | None = None
        self._header = b""
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if os.fstat(self._fd).st_size == 0:
                self._header = _rows([contract.COLUMN_NAMES])
                self._write(b"")  # the header now, or with the first rows once there is room

    @property
    def unwritten(self) -> int:
        return len(self._pending)

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

    def flush(self, pause: Callable[[], None] | None = None) -> bool:
        """Append the pending rows; True when everything is written (False: kept for the next try).

        With ``pause`` (the load process's periodic flush: ``gevent.sleep(0)``) the rows go in batches of
        FLUSH_BATCH with a pause after each, so the hub reads the streams in between: formatting 250 rows
        at once blocked it for 10-12 ms, and a token that arrived meanwhile was dated late."""
        if self._fd is None:
            self._pending.clear()
            return True
        if not self._pending and not self._header:
            return True
        pending = self._pending
        while True:
            batch = pending[:FLUSH_BATCH] if pause is not None else pending
            data = _rows([_cell(record.get(name), _DECIMALS[name]) for name in contract.COLUMN_NAMES] for record in batch)
            if not self._write(data):
                return False
            del pending[: len(batch)]
            if not pending:
                return True
            pause()

    def _write(self, data: bytes) -> bool:
        data = self._header + data
        if not data:
            return True
        fd = self._fd
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as error:
            try:
                os.ftruncate(fd, size)  # no half row: the next try appends whole rows
            except OSError:
                pass
            self.write_error = error.strerror or str(error)
            return False
        self._header = b""
        self.write_error = None
        return True

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError as error:  # NFS and friends report a failed write here
                self.write_error = error.strerror or str(error)
            self._fd = None


def _rows(rows) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8")
