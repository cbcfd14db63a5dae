"""The stage timeline, kept by the master: when each stage really started and ended.

Records are stamped from it by their start time, on the master, so a worker that joined late (or
whose messages arrive late) is still stamped right. A request that started after the last stage's end
(the drain) is stamped stage -1; one stamped before that end was known keeps the last stage, so the
report assigns stages from ``stages.csv`` itself. It is written to ``stages.csv`` at every change.

It also keeps how many users each stage really held: the master feeds it the running user count
(:meth:`StageTimeline.sample`, every 0.25 s and when Locust reports a spawn complete; on a master the
count is the sum the workers reported). Between two samples the count is taken as constant, so
``users_mean`` is the time-weighted mean over the stage; ``reached_s`` is when the count first got to
the stage's target (from below, or from above for a stage with fewer users than the one before).
"""

from __future__ import annotations

import bisect
import csv
import os
from dataclasses import dataclass

from ollama_locust import contract


@dataclass
class StageSpan:
    stage: int
    users: int
    start_time: float
    end_time: float | None
    settle_s: float
    kind: str
    users_mean: float | None = None  # filled from the master's user-count samples
    users_max: int | None = None
    reached_s: float | None = None
    users_before: int = 0  # running when the stage began
    rate: float | None = None  # a rate stage: offered requests/s (--shape rate)
    _area: float = 0.0  # user-seconds so far
    _last_time: float = 0.0
    _last_count: int = 0

    def _advance(self, now: float, count: int) -> None:
        """Account the users held from the last sample to ``now``, then take ``count`` as running."""
        now = max(now, self._last_time)
        self._area += self._last_count * (now - self._last_time)
        self._last_time, self._last_count = now, count
        self.users_max = max(self.users_max or 0, count)
        held = now - self.start_time
        self.users_mean = self._area / held if held > 0 else float(count)
        if self.reached_s is None and (count >= self.users if self.users_before <= self.users else count <= self.users):
            self.reached_s = held


class StageTimeline:
    def __init__(self, path: str | None = None):
        self.path = path
        self.spans: list[StageSpan] = []
        self.write_error: str | None = None  # the last write's error (a full disk), None once a write succeeded
        self._starts: list[float] = []
        self._running = 0  # the last sampled user count

    def begin(self, users: int, settle_s: float, kind: str, now: float, rate: float | None = None) -> StageSpan:
        running = self._running
        if self.spans and self.spans[-1].end_time is None:
            self.spans[-1]._advance(now, running)
            self.spans[-1].end_time = now
        span = StageSpan(len(self.spans), users, now, None, settle_s, kind, users_before=running, rate=rate,
                         _last_time=now, _last_count=running)
        span._advance(now, running)
        self.spans.append(span)
        self._starts.append(now)
        self.write()
        return span

    def finish(self, now: float) -> None:
        if self.spans and self.spans[-1].end_time is None:
            self.spans[-1]._advance(now, self._running)
            self.spans[-1].end_time = now
            self.write()

    def sample(self, now: float, count: int) -> None:
        """The running user count at ``now`` (the master's sampler); ignored outside a stage."""
        self._running = count
        span = self.current
        if span is not None and span.end_time is None:
            span._advance(now, count)

    @property
    def current(self) -> StageSpan | None:
        return self.spans[-1] if self.spans else None

    def locate(self, start_time: float) -> StageSpan | None:
        """The stage in which a request that started at ``start_time`` started (None: before the first,
        or after the last stage's end: the drain belongs to no stage)."""
        index = bisect.bisect_right(self._starts, start_time) - 1
        if index < 0:
            return None
        span = self.spans[index]
        if span.end_time is not None and start_time >= span.end_time:
            return None
        return span

    def stamp(self, record: dict) -> dict:
        span = self.locate(record.get("start_time") or 0.0)
        if span is None:
            record["stage"], record["stage_users"], record["settle"] = -1, 0, False
        else:
            record["stage"] = span.stage
            record["stage_users"] = span.users
            record["settle"] = record["start_time"] < span.start_time + span.settle_s
        return record

    def write(self) -> bool:
        """Rewrite stages.csv (whole, atomically). A write error (a full disk) keeps the spans in memory for
        the next write and says so in ``write_error`` (the run owner stops the run); it never raises."""
        if not self.path:
            return True
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(contract.STAGE_COLUMN_NAMES)
                for span in self.spans:
                    writer.writerow(
                        [span.stage, span.users, f"{span.start_time:.6f}",
                         "" if span.end_time is None else f"{span.end_time:.6f}", f"{span.settle_s:g}", span.kind,
                         "" if span.users_mean is None else f"{span.users_mean:.3f}",
                         "" if span.users_max is None else span.users_max,
                         "" if span.reached_s is None else f"{span.reached_s:.3f}",
                         "" if span.rate is None else f"{span.rate:g}"]
                    )
            os.replace(tmp, self.path)
        except OSError as error:
            self.write_error = error.strerror or str(error)
            try:
                os.remove(tmp)
            except OSError:
                pass
            return False
        self.write_error = None
        return True
