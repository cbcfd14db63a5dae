"""What the web UI's LLM tab shows, computed live from the stamped records (plain Python: no gevent, no flask).

:class:`LiveStats` is fed one record at a time (``add``, a record-sink listener) and a user-count sample
every ``POINT_EVERY_S`` (``sample``); ``snapshot()`` gives

* ``stages``: one row per stage of the test — the report's step table, live: users (target and time-weighted
  mean held), requests, success %, failed (with a breakdown by user class and outcome), TTFT p50/p95, E2E
  p95, tokens/s per request (median) and in total, req/s, queue wait median — plus per-class rows and the
  stage's time split (median queue wait / model load / prompt eval / generation / outside the server);
* ``total``: the same row over the whole test (since the last reset);
* ``series``: chart points — a rolling ``WINDOW_S`` window of TTFT and tokens/s, the user count, and
  requests in flight (time-averaged per point, from the finished requests' start and end).

Counting follows the report (``docs/reports.md``): a request belongs to the stage in which it started and
requests started in a stage's settle window are left out of it; throughput counts what happened inside the
stage's measured window: successful requests by their completion, output tokens where they arrived
(``ollama_locust.stats.token_spans``: the report's one rule, over the record's ``token_arrivals`` buckets). Percentiles are ``ollama_locust.stats.percentile`` (the report's), exact up
to ``SAMPLE_CAP`` values per series and group, a uniform reservoir sample above.

``reset()`` (Locust's Reset, a new test) empties everything; records that started before it are ignored.
"""

from __future__ import annotations

import math
import random
import time
from array import array
from collections import Counter, deque

from ollama_locust import contract, stats
from ollama_locust.stats import percentile

SAMPLE_CAP = 5_000  # values kept per series, stage and user class (exact percentiles below it)
SNAPSHOT_EVERY_S = 1.0
WINDOW_S = 10.0  # rolling window of the TTFT / tokens/s chart points
POINT_EVERY_S = 2.0
SERIES_POINTS = 1800  # one hour of points at 2 s
TOTAL = "Total"
NA = "n/a"
# The stage's time split (median ms per successful request), in the order a request spends them.
TIME_PARTS: tuple[tuple[str, str], ...] = (
    ("queue_wait_ms", "queue wait"),
    ("load_ms", "model load"),
    ("prompt_eval_ms", "prompt eval"),
    ("eval_ms", "generation"),
    ("outside_ms", "outside the server"),
)


def number(value) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


class Reservoir:
    """At most ``cap`` floats: all of them up to the cap, a uniform sample (Algorithm R) above it."""

    __slots__ = ("cap", "seen", "values", "_random")

    def __init__(self, cap: int = SAMPLE_CAP, seed: int = 0):
        self.cap, self.seen, self.values, self._random = cap, 0, array("d"), random.Random(seed)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.cap:
            self.values.append(value)
        else:
            slot = self._random.randrange(self.seen)
            if slot < self.cap:
                self.values[slot] = value

    def sorted(self) -> list[float]:
        return sorted(self.values)


class Group:
    """One user class (or the total) in one stage: outcome counts and bounded samples of ok requests."""

    SERIES = ("ttft_ms", "e2e_ms", "tokens_per_s")

    def __init__(self, cap: int = SAMPLE_CAP, split: bool = False):
        self.outcomes: Counter = Counter()
        self.version = 0
        self._row: tuple[int, dict] | None = None  # (version, row): an unchanged group is not sorted again
        self._split: tuple[int, dict | None] | None = None
        self.samples = {name: Reservoir(cap, seed) for seed, name in enumerate(self.SERIES, 1)}
        if split:
            self.samples.update({key: Reservoir(cap, 10 + i) for i, (key, _) in enumerate(TIME_PARTS)})

    def add(self, record: dict) -> None:
        outcome = record.get("outcome") or ""
        self.outcomes[outcome] += 1
        self.version += 1
        if outcome != contract.OK:
            return
        for name, reservoir in self.samples.items():
            if name == "outside_ms":
                e2e, total = number(record.get("e2e_ms")), number(record.get("server_total_ms"))
                value = None if e2e is None or total is None else max(0.0, e2e - total)
            else:
                value = number(record.get(name))
            if value is not None:
                reservoir.add(value)

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    def failed(self) -> dict[str, int]:
        return {o: self.outcomes[o] for o in contract.FAILURE_OUTCOMES if self.outcomes[o]}

    def row(self) -> dict:
        if self._row is None or self._row[0] != self.version:
            self._row = (self.version, self._compute_row())
        return dict(self._row[1])

    def _compute_row(self) -> dict:
        ok, cut, dropped = self.outcomes[contract.OK], self.outcomes[contract.CUT_SHORT], self.outcomes[contract.DROPPED]
        judged = self.requests - cut - dropped
        ttft, e2e, tps = (self.samples[n].sorted() for n in self.SERIES)
        return {"requests": self.requests, "ok": ok, "cutshort": cut, "dropped": dropped, "failed": judged - ok,
                "success": 100.0 * ok / judged if judged else None,
                "ttftp50": percentile(ttft, 50), "ttftp95": percentile(ttft, 95), "e2ep95": percentile(e2e, 95),
                "tpsrequest": percentile(tps, 50)}

    def split(self) -> dict | None:
        if "queue_wait_ms" not in self.samples or not self.samples["eval_ms"].values:
            return None  # no server durations (OpenAI API, a gateway) or no successful request yet
        if self._split is None or self._split[0] != self.version:
            self._split = (self.version, {key: percentile(self.samples[key].sorted(), 50) or 0.0 for key, _ in TIME_PARTS})
        return dict(self._split[1])


class StageLive:
    """One stage: its groups, completions and tokens inside its measured window, users held."""

    def __init__(self, cap: int):
        self.cap = cap
        self.groups: dict[str, Group] = {TOTAL: Group(cap, split=True)}
        self.completed = 0  # successful requests that ended inside the measured window
        self.tokens = 0.0  # output tokens (any outcome's) that arrived inside the measured window
        self.user_seconds = 0.0
        self.sampled_s = 0.0

    def add(self, record: dict) -> None:
        name = record.get("user_class") or "?"
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = Group(self.cap)
        group.add(record)
        self.groups[TOTAL].add(record)


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


class LiveStats:
    """The LLM tab's numbers. ``spans()`` returns the stage timeline's spans (StageSpan-like objects)."""

    def __init__(self, spans=lambda: [], cap: int = SAMPLE_CAP, clock=time.time):
        self.spans = spans
        self.cap = cap
        self.clock = clock
        self.reset(now=-math.inf)  # until a reset, every record counts

    def reset(self, now: float | None = None) -> None:
        """Forget everything (Locust's Reset, a new test): records that started before now are ignored."""
        self.reset_at = self.clock() if now is None else now
        self.stages: dict[int, StageLive] = {}
        self.total = Group(self.cap, split=True)
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.total_tokens = 0
        self.version = 0
        self.recent: deque = deque()  # (arrival, ttft_ms, tokens_per_s, output_tokens) of ok records
        self.series: deque = deque(maxlen=SERIES_POINTS)
        self.inflight: dict[int, float] = {}  # point index -> request-seconds in flight during it
        self._last_sample: tuple[float, int | None, int] | None = None
        self._cache: tuple[float, dict] | None = None

    # -- feeding -----------------------------------------------------------------------------
    def add(self, record: dict) -> None:
        start = number(record.get("start_time"))
        if start is None or start < self.reset_at:
            return
        self.version += 1
        outcome = record.get("outcome")
        end = start + (number(record.get("e2e_ms")) or 0.0) / 1000.0
        self.first_start = start if self.first_start is None else min(self.first_start, start)
        self.last_end = end if self.last_end is None else max(self.last_end, end)
        self.total.add(record)
        stage = record.get("stage")
        if isinstance(stage, int) and stage >= 0 and not record.get("settle"):
            self._stage(stage).add(record)
        self._count_windows(record, start, end, outcome)
        self._count_inflight(start, end)
        if outcome == contract.OK:
            tokens = int(number(record.get("output_tokens")) or 0)
            self.total_tokens += tokens
            self.recent.append((self.clock(), number(record.get("ttft_ms")), number(record.get("tokens_per_s")), tokens))

    def _stage(self, index: int) -> StageLive:
        stage = self.stages.get(index)
        if stage is None:
            stage = self.stages[index] = StageLive(self.cap)
        return stage

    def _windows(self):
        """(stage index, measured window start, end) of every stage since the reset; an open stage ends at +inf."""
        for span in self.spans():
            end = math.inf if span.end_time is None else span.end_time
            if end > self.reset_at:
                yield span.stage, max(span.start_time + span.settle_s, self.reset_at), end

    def _count_windows(self, record: dict, start: float, end: float, outcome) -> None:
        """Completions and arrived tokens inside each stage's window, by the report's rule
        (``ollama_locust.stats.token_spans``: any outcome's tokens, where they arrived)."""
        spans = stats.token_spans(start, number(record.get("ttft_ms")), number(record.get("e2e_ms")),
                                  number(record.get("output_tokens")) or 0.0, record.get("token_arrivals"))
        for index, w0, w1 in self._windows():
            if outcome == contract.OK and w0 <= end < w1:
                self._stage(index).completed += 1
            if spans:
                tokens = stats.tokens_between(spans, w0, w1)
                if tokens:
                    self._stage(index).tokens += tokens

    def _count_inflight(self, start: float, end: float) -> None:
        first, last = int(start // POINT_EVERY_S), int(end // POINT_EVERY_S)
        for point in range(first, min(last, first + SERIES_POINTS) + 1):
            t0 = point * POINT_EVERY_S
            seconds = _overlap(start, end, t0, t0 + POINT_EVERY_S)
            if seconds:
                self.inflight[point] = self.inflight.get(point, 0.0) + seconds
        if len(self.inflight) > SERIES_POINTS + 60:
            for old in sorted(self.inflight)[: len(self.inflight) - SERIES_POINTS]:
                del self.inflight[old]

    def sample(self, users: int | None, stage: int | None, now: float | None = None) -> dict:
        """A user-count sample and a chart point; call every ``POINT_EVERY_S`` while a test runs."""
        now = self.clock() if now is None else now
        users = users or 0
        if self._last_sample is not None:
            t, last_stage, last_users = self._last_sample
            if last_stage is not None and last_stage == stage and now > t:
                live = self._stage(last_stage)
                live.user_seconds += last_users * (now - t)
                live.sampled_s += now - t
        self._last_sample = (now, stage, users)
        while self.recent and self.recent[0][0] < now - WINDOW_S:
            self.recent.popleft()
        ttft = sorted(r[1] for r in self.recent if r[1] is not None)
        tps = sorted(r[2] for r in self.recent if r[2] is not None)
        window = min(WINDOW_S, now - self.first_start) if self.first_start else WINDOW_S
        point = {"t": round(now, 3), "users": users, "stage": stage,
                 "ttftp50": _round(percentile(ttft, 50)), "ttftp95": _round(percentile(ttft, 95)),
                 "tpsrequest": _round(percentile(tps, 50)),
                 "tpstotal": _round(sum(r[3] for r in self.recent) / window) if self.recent and window > 0 else None}
        self.series.append(point)
        return point

    # -- reading -----------------------------------------------------------------------------
    def snapshot(self, running: bool = True) -> dict:
        """Stage rows, the whole-test row and the chart series; computed at most once per ``SNAPSHOT_EVERY_S``."""
        now = self.clock()
        if self._cache is not None and now - self._cache[0] < SNAPSHOT_EVERY_S:
            return self._cache[1]
        stages = []
        for span in self.spans():
            end = span.end_time if span.end_time is not None else (now if running else (self.last_end or now))
            if end <= self.reset_at:
                continue  # ended before the reset
            w0 = max(span.start_time + span.settle_s, self.reset_at)
            stages.append(self._stage_row(span, max(0.0, end - w0)))
        total = self._total_row(now, running)
        series = [{**p, "inflight": self._inflight_at(p["t"])} for p in self.series]
        result = {"stages": stages, "total": total, "series": series, "requests": self.version,
                  "reset_at": self.reset_at if math.isfinite(self.reset_at) else None, "time_parts": [{"key": k, "label": label} for k, label in TIME_PARTS]}
        self._cache = (now, result)
        return result

    def _inflight_at(self, t: float) -> float | None:
        """Mean requests in flight over the point interval ending at ``t`` (finished requests only)."""
        point = int(t // POINT_EVERY_S) - 1
        seconds = self.inflight.get(point)
        return round(seconds / POINT_EVERY_S, 2) if seconds else 0.0

    def _stage_row(self, span, window_s: float) -> dict:
        live = self.stages.get(span.stage) or StageLive(self.cap)
        total = live.groups[TOTAL]
        rate = getattr(span, "rate", None)
        row = {"stage": span.stage, "users": span.users if rate is None else f"{rate:g} req/s",
               "rate": rate, "kind": span.kind,
               "held": live.user_seconds / live.sampled_s if live.sampled_s else None,
               "start_time": span.start_time, "end_time": span.end_time, "window_s": window_s,
               **total.row(),
               "tpstotal": live.tokens / window_s if window_s > 0 else None,
               "rps": live.completed / window_s if window_s > 0 else None,
               "queuep50": (total.split() or {}).get("queue_wait_ms"),
               "split": total.split(),
               "failedby": {name: g.failed() for name, g in sorted(live.groups.items()) if name != TOTAL and g.failed()},
               "classes": [{"userclass": name, **g.row()} for name, g in sorted(live.groups.items()) if name != TOTAL]}
        return display(row)

    def _total_row(self, now: float, running: bool) -> dict:
        window = None
        if self.first_start is not None:
            end = now if running else (self.last_end or now)
            window = max(0.0, end - self.first_start)
        row = {"stage": "all", "users": None, "window_s": window, **self.total.row(),
               "tpstotal": self.total_tokens / window if window else None,
               "rps": self.total.outcomes[contract.OK] / window if window else None,
               "queuep50": (self.total.split() or {}).get("queue_wait_ms"), "split": self.total.split()}
        return display(row)


def _round(value, digits: int = 1):
    return None if value is None else round(value, digits)


def display(value):
    """Numbers rounded for the table (0.1); what could not be measured says so (``n/a``)."""
    if isinstance(value, dict):
        return {k: display(v) for k, v in value.items()}
    if isinstance(value, list):
        return [display(v) for v in value]
    if value is None:
        return NA
    if isinstance(value, float):
        return round(value, 1) if math.isfinite(value) else NA
    return value
