"""The stage timeline, kept by the master: when each stage really started and ended.

Records are stamped from it by their start time, on the master, so a worker that joined late (or
whose messages arrive late) is still stamped right. A request that started after the last stage's end
(the drain) is stamped stage -1; one stamped before that end was known keeps the last stage, so the
report assigns stages from ``stages.csv`` itself. It is written to ``stages.csv`` at every change.
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


class StageTimeline:
    def __init__(self, path: str | None = None):
        self.path = path
        self.spans: list[StageSpan] = []
        self._starts: list[float] = []

    def begin(self, users: int, settle_s: float, kind: str, now: float) -> StageSpan:
        if self.spans and self.spans[-1].end_time is None:
            self.spans[-1].end_time = now
        span = StageSpan(len(self.spans), users, now, None, settle_s, kind)
        self.spans.append(span)
        self._starts.append(now)
        self.write()
        return span

    def finish(self, now: float) -> None:
        if self.spans and self.spans[-1].end_time is None:
            self.spans[-1].end_time = now
            self.write()

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

    def write(self) -> None:
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(contract.STAGE_COLUMN_NAMES)
            for span in self.spans:
                writer.writerow(
                    [span.stage, span.users, f"{span.start_time:.6f}",
                     "" if span.end_time is None else f"{span.end_time:.6f}", f"{span.settle_s:g}", span.kind,
                     "" if span.users_mean is None else f"{span.users_mean:.3f}",
                     "" if span.users_max is None else span.users_max,
                     "" if span.reached_s is None else f"{span.reached_s:.3f}"]
                )
        os.replace(tmp, self.path)
