"""From request records to per-step numbers: metrics, notes, error breakdown, time split.

Vectorised: the records are sorted once by step, each step is a slice of plain numpy arrays, and the
metrics of ``_metrics.STEP_METRICS`` run on those slices.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import numpy as np

from ollama_locust import contract

from ._concurrency import holding_at_send, overlap_measures
from ._step_metrics import Sample, compute_all, is_number
from ._window import Arrivals, arrivals, assign_stages, count_in

DRAIN = -2  # the stage of a request that started after the last stage's end (restamp): no step's

# The parts of one request's time, from Ollama's own durations (ollama-api.md). Order = stacking order.
TIME_PARTS: tuple[tuple[str, str, str], ...] = (
    ("queue_wait_ms", "queue wait", "waiting for a free OLLAMA_NUM_PARALLEL slot (total - load - prompt eval - eval)"),
    ("load_ms", "model load", "load_duration: scheduler queue and (cold) model load"),
    ("prompt_eval_ms", "prompt eval", "prompt_eval_duration: prefill of the new prompt tokens"),
    ("eval_ms", "generation", "eval_duration: generating the answer"),
    ("outside_ms", "outside the server", "e2e - total_duration: network, gateway, client"),
)

# The client's view of one request's time (every API, no server durations needed), and the measured overlap.
CLIENT_SPLIT: tuple[tuple[str, str, str], ...] = (
    ("ttft_ms", "before the first token", "median TTFT: queueing, model load and prefill, seen from the client"),
    ("streaming_ms", "streaming", "median e2e - ttft: the answer streaming in"),
    ("ttft_share", "share before the first token", "TTFT median / (TTFT median + streaming median)"),
    ("requests_ahead", "requests ahead at send", "mean number of other requests in flight when a request was sent "
                                                 "(overlap of the records' start..end intervals)"),
    ("ahead_left_ms", "time left on the requests ahead", "mean time from sending until every request sent before it "
                                                         "had finished: what a one-at-a-time server makes it wait"),
    ("streams_alongside", "answers streaming alongside", "mean number of other answers streaming while one "
                                                         "streamed (overlap of first token..end, time-weighted)"),
    ("holding_at_send", "holding a slot at send", "mean number of other requests holding a server slot when a request "
                                                  "was sent: from start + queue wait to the end (only where the "
                                                  "server reports its durations); the rest of the requests ahead "
                                                  "were queued"),
    ("in_flight_p95", "in flight (p95)", "95th percentile of the requests in flight (this one included) at each "
                                         "request's send: the concurrency the step really put on the server"),
    ("waited", "waited > 0.1 s to start", "successful requests whose queue wait (where reported; else TTFT minus the "
                                          "step's fastest TTFT) exceeded 0.1 s"),
)
WAITED_MS = 100.0  # a request that waited longer than this for a slot "waited to start"

OUTCOME_NOTE = {
    contract.TIMEOUT: ("timeout", "timeouts"),
    contract.HTTP_ERROR: ("HTTP error", "HTTP errors"),
    contract.STREAM_ERROR: ("stream error", "stream errors"),
    contract.EMPTY: ("empty reply", "empty replies"),
}


@dataclass
class Step:
    stage: int
    users: float  # target user count (nan when unknown)
    kind: str = ""
    start: float = math.nan
    end: float = math.nan
    settle_s: float = 0.0
    window_s: float = math.nan
    metrics: dict = field(default_factory=dict)
    outcomes: dict = field(default_factory=dict)  # outcome -> count (settle excluded)
    statuses: dict = field(default_factory=dict)  # outcome -> {http_status: count}
    top_errors: list = field(default_factory=list)  # [(error text, count)], most frequent first
    outcome_errors: dict = field(default_factory=dict)  # outcome -> its most frequent error text
    settled: int = 0
    time_split: dict | None = None  # part key -> median ms, plus "n"
    client_split: dict | None = None  # the client's view: before the first token vs streaming, overlap (CLIENT_SPLIT)
    concurrency: dict | None = None  # _concurrency.concurrency_mode's verdict against the baseline, or None
    notes: list = field(default_factory=list)
    window_note: str = ""
    users_mean: float = math.nan  # stages.csv: time-weighted mean users running (nan: not recorded)
    users_max: float = math.nan
    reached_s: float = math.nan  # seconds until the target count ran (nan with users_mean: never reached)
    ttft_n: int = 0  # successful requests with a TTFT (the TTFT percentiles' sample)
    invalid_cut: int = 0  # invalid replies that ended at the length limit (done_reason "length")
    all_replies: dict | None = None  # {"n", "p50_ms", "p95_ms"} over every fully measured reply (ok + invalid)
    end_inclusive: bool = False  # the end is the last request's end (estimated): a completion at it counts
    rate: float = math.nan  # a rate stage (--shape rate): offered requests/s (stages.csv rate); nan: a stage of users
    queue_trend: dict | None = None  # a rate stage: does its queue grow without bound? (queue_trend())

    @property
    def window(self) -> tuple[float, float]:
        """The measured window [lo, hi): start + settle .. end (unix seconds)."""
        return self.start + self.settle_s, self.end

    @property
    def not_held(self) -> str:
        """Why the step did not hold its target user count ('' when it did, or when that was not recorded)."""
        if not is_number(self.users_mean) or not is_number(self.users):
            return ""
        duration = self.end - self.start if is_number(self.end) and is_number(self.start) else math.nan
        held = f"held {self.users_mean:.1f} on average"
        if is_number(self.users_max):
            held += f", at most {int(self.users_max)}"
        if not is_number(self.reached_s):
            return f"{int(self.users)} users never all running ({held})"
        if is_number(duration) and self.reached_s > duration / 2:
            return f"{int(self.users)} users reached only after {self.reached_s:.1f} s of {duration:.0f} s ({held})"
        return ""
    generator: dict | None = None  # _generator.step_health: the load processes' worst second in the step

    @property
    def is_rate(self) -> bool:
        return is_number(self.rate)

    @property
    def load(self) -> float:
        """What the step put on the server: its offered rate (a rate stage) or its target users; nan unknown."""
        return self.rate if self.is_rate else self.users

    @property
    def users_label(self) -> str:
        if self.is_rate:
            return f"{self.rate:g}"
        return str(int(self.users)) if is_number(self.users) else "?"

    @property
    def failures(self) -> int:
        return sum(c for o, c in self.outcomes.items() if o != contract.OK and o not in contract.NOT_JUDGED)


def _steps_from_stages(stages, run: dict, record_end: dict) -> list[Step]:
    steps = []
    rows = stages.to_dict("records")
    for i, row in enumerate(rows):
        start, end = float(row.get("start_time", math.nan)), float(row.get("end_time", math.nan))
        settle = float(row.get("settle_s", math.nan))
        settle = settle if is_number(settle) else 0.0
        step = Step(stage=int(row["stage"]), users=float(row["users"]), kind=str(row.get("kind") or ""),
                    start=start, end=end, settle_s=settle)
        for name in ("users_mean", "users_max", "reached_s", "rate"):
            value = row.get(name)
            setattr(step, name, float(value) if value is not None and is_number(float(value)) else math.nan)
        if not is_number(end):
            nxt = rows[i + 1].get("start_time") if i + 1 < len(rows) else None
            if nxt is not None and is_number(float(nxt)):
                step.end = float(nxt)
                step.window_note = "no end time: measured up to the next step's start"
            elif is_number(run.get("ended_at")):
                step.end = float(run["ended_at"])
                step.window_note = "no end time: measured up to the run's end (run.json)"
            elif step.stage in record_end:
                step.end = record_end[step.stage]
                step.end_inclusive = True
                step.window_note = "no end time (run stopped?): measured up to its last request's end"
        steps.append(step)
    return steps


def restamp(frame, stages) -> int:
    """Assign every record's stage (and settle flag) from stages.csv's spans by its start time, in place.

    The stamp the load side wrote is not trusted blindly: a request that started after the last stage's
    end (the drain) may have been stamped with the last stage before that end was known. Such requests
    get ``DRAIN``. Records without a start time keep their stamp. Returns how many stamps changed.
    """
    if stages is None or len(frame) == 0:
        return 0
    starts = stages["start_time"].to_numpy(dtype="float64")
    if not np.isfinite(starts).all() or (np.diff(starts) < 0).any():
        return 0
    ends = stages["end_time"].to_numpy(dtype="float64")
    settles = np.nan_to_num(stages["settle_s"].to_numpy(dtype="float64"))
    numbers = stages["stage"].to_numpy(dtype="float64")
    start = frame["start_time"].to_numpy(dtype="float64")
    pos = assign_stages(start, starts, ends)
    has = np.isfinite(start)
    old = frame["stage"].to_numpy(dtype="float64")
    new = np.where(pos >= 0, numbers[np.clip(pos, 0, None)], np.where(pos == DRAIN, DRAIN, -1.0))
    new = np.where(has, new, old)
    settle = frame["settle"].to_numpy(dtype=bool)
    in_stage = has & (pos >= 0)
    settle = np.where(in_stage, start < starts[np.clip(pos, 0, None)] + settles[np.clip(pos, 0, None)], settle)
    settle = np.where(has & (pos < 0), False, settle)
    changed = int((new != old).sum())
    frame["stage"] = new
    frame["settle"] = settle
    return changed


def drain_summary(frame) -> dict | None:
    """The requests that started after the last stage's end: {"requests", "outcomes"} or None."""
    if len(frame) == 0:
        return None
    drained = frame["stage"].to_numpy(dtype="float64") == DRAIN
    if not drained.any():
        return None
    values, counts = np.unique(frame["outcome"].astype(object).to_numpy()[drained].astype(str), return_counts=True)
    return {"requests": int(drained.sum()), "outcomes": {str(v): int(c) for v, c in zip(values, counts)}}


_ARRIVALS_CACHE: list = []  # [(weakref to the frame, its length, Arrivals)]: the table and the class rows share it


def record_arrivals(frame) -> Arrivals:
    """Every record's token arrivals (any outcome: the server produced those tokens), computed once per frame."""
    if _ARRIVALS_CACHE:
        ref, length, cached = _ARRIVALS_CACHE[0]
        if ref() is frame and length == len(frame):
            return cached
    result = arrivals(frame["start_time"].to_numpy(dtype="float64"), frame["ttft_ms"].to_numpy(dtype="float64"),
                      frame["e2e_ms"].to_numpy(dtype="float64"), frame["output_tokens"].to_numpy(dtype="float64"),
                      frame["token_arrivals"].to_numpy(dtype=object) if "token_arrivals" in frame else None,
                      frame["token_arrivals"].notna().to_numpy() if "token_arrivals" in frame else None)
    _ARRIVALS_CACHE[:] = [(weakref.ref(frame), len(frame), result)]
    return result


def ok_ends(frame, mask=None) -> np.ndarray:
    """The sorted completion times (start + e2e) of the successful records (``mask``: only some records)."""
    ok = (frame["outcome"] == contract.OK).to_numpy(dtype=bool)
    if mask is not None:
        ok = ok & mask
    end = frame["start_time"].to_numpy(dtype="float64") + frame["e2e_ms"].to_numpy(dtype="float64") / 1000.0
    end = end[ok]
    return np.sort(end[np.isfinite(end)])


def step_window(step: Step) -> tuple[float, float]:
    """The step's window [lo, hi), hi nudged past an estimated end (the last request's end counts)."""
    lo, hi = step.window
    if step.end_inclusive and is_number(hi):
        hi = float(np.nextafter(hi, math.inf))
    return lo, hi


def build_steps(frame, stages, run: dict) -> list[Step]:
    """One Step per stage with metrics, outcomes, notes-ready counts and the time split.

    Records of the drain (stage ``DRAIN``, see :func:`restamp`) belong to no step; their tokens and
    completions still count in the window they fall in (none can: they started after the last end).
    """
    import pandas as pd

    stage_all = frame["stage"].to_numpy(dtype="float64")
    settle_all = frame["settle"].to_numpy(dtype=bool)
    start_all = frame["start_time"].to_numpy(dtype="float64")
    e2e_all = frame["e2e_ms"].to_numpy(dtype="float64")
    end_all = start_all + np.nan_to_num(e2e_all) / 1000.0

    # Estimated windows for stages without a stages.csv row: first start -> last end of its records.
    present = np.unique(stage_all) if len(stage_all) else np.empty(0)
    present = present[present != DRAIN]
    record_end, record_start, record_users = {}, {}, {}
    users_all = frame["stage_users"].to_numpy(dtype="float64")
    if len(stage_all):
        order = np.argsort(stage_all, kind="stable")
        bounds = np.searchsorted(stage_all[order], present)
        for value, lo, hi in zip(present, bounds, list(bounds[1:]) + [len(order)]):
            idx = order[lo:hi]
            s = int(value)
            with np.errstate(all="ignore"):
                record_start[s] = np.nanmin(start_all[idx]) if np.isfinite(start_all[idx]).any() else math.nan
                record_end[s] = np.nanmax(end_all[idx]) if np.isfinite(end_all[idx]).any() else math.nan
            u = users_all[idx]
            u = u[np.isfinite(u)]
            record_users[s] = float(np.bincount(u.astype(np.int64)).argmax()) if len(u) and u.min() >= 0 else math.nan

    steps = _steps_from_stages(stages, run, record_end) if stages is not None else []
    known = {s.stage for s in steps}
    for s in sorted(int(v) for v in present):
        if s not in known:
            step = Step(stage=s, users=record_users.get(s, math.nan), start=record_start.get(s, math.nan),
                        end=record_end.get(s, math.nan), end_inclusive=True)
            if s < 0:
                step.users = math.nan
                step.window_note = "no load shape: the whole run as one row, duration from its requests"
            elif stages is not None:
                step.window_note = "not in stages.csv: duration estimated from its requests"
            steps.append(step)
    steps.sort(key=lambda st: st.stage)
    for step in steps:
        if is_number(step.start) and is_number(step.end):
            step.window_s = max(0.0, step.end - step.start - step.settle_s)

    # Overlap of all records (settle window and failures included: they occupied the server too).
    ttft_all = frame["ttft_ms"].to_numpy(dtype="float64")
    overlap_all = overlap_measures(start_all, e2e_all, ttft_all)
    queue_all = frame["queue_wait_ms"].to_numpy(dtype="float64")
    hold_all = start_all + queue_all / 1000.0  # nan without the server's queue wait: no slot split then
    overlap_all = overlap_all + (holding_at_send(start_all, hold_all, np.where(np.isfinite(e2e_all), end_all, np.nan)),
                                 queue_all)

    # Counted records: the settle window's ones are left out (and counted per step).
    counted = frame.loc[~settle_all] if settle_all.any() else frame
    overlap = tuple(v[~settle_all] for v in overlap_all) if settle_all.any() else overlap_all
    settled = pd.Series(stage_all[settle_all]).value_counts() if settle_all.any() else pd.Series(dtype="int64")
    stage = counted["stage"].to_numpy(dtype="float64")
    outcome = counted["outcome"]
    outcome_str = outcome.astype(object).to_numpy() if len(counted) else np.empty(0, dtype=object)
    ok = outcome_str == contract.OK
    cut = outcome_str == contract.CUT_SHORT
    dropped = outcome_str == contract.DROPPED
    send_lag = counted["send_lag_ms"].to_numpy(dtype="float64")
    e2e = counted["e2e_ms"].to_numpy(dtype="float64")
    ttft = counted["ttft_ms"].to_numpy(dtype="float64")
    tps = counted["tokens_per_s"].to_numpy(dtype="float64")
    tokens = counted["output_tokens"].to_numpy(dtype="float64")
    done_reason = counted["done_reason"].astype(object).to_numpy() if len(counted) else np.empty(0, dtype=object)

    order = np.argsort(stage, kind="stable")
    sorted_stage = stage[order]
    by_stage = {}
    for step in steps:
        lo, hi = np.searchsorted(sorted_stage, [step.stage, step.stage + 0.5])
        by_stage[step.stage] = order[lo:hi]

    parts = _time_parts(counted, ok)
    start_counted = start_all[~settle_all] if settle_all.any() else start_all
    arrived, ends = record_arrivals(frame), ok_ends(frame)
    failures = ~ok & ~cut & ~dropped
    fail_frame = counted.loc[failures, ["stage", "outcome", "http_status", "error"]] if failures.any() else None

    for step in steps:
        idx = by_stage[step.stage]
        step.settled = int(settled.get(float(step.stage), 0))
        sample = sample_of(idx, ok, cut, e2e, ttft, tps, tokens, step.window_s, dropped)
        lo, hi = step_window(step)
        sample.tokens_in_window, sample.completed = arrived.in_window(lo, hi), count_in(ends, lo, hi)
        sample.users_mean = step.users_mean
        sample.offered_rate = step.rate
        in_flight = overlap[0][idx]
        sample.in_flight = in_flight[np.isfinite(in_flight)] + 1
        lag = send_lag[idx[~dropped[idx]]]
        sample.send_lag_ms = lag[np.isfinite(lag)]
        if step.is_rate:
            step.queue_trend = queue_trend(idx, start_counted, parts, ttft, ok, sample, step.window_s)
        step.ttft_n = len(sample.ttft_ms)
        invalid = idx[outcome_str[idx] == contract.INVALID]
        if len(invalid):
            step.invalid_cut = int((done_reason[invalid] == "length").sum())
            replies = idx[(ok[idx] | (outcome_str[idx] == contract.INVALID)) & np.isfinite(e2e[idx])]
            if len(replies):
                values = e2e[replies]
                step.all_replies = {"n": int(len(values)), "p50_ms": float(np.percentile(values, 50)),
                                    "p95_ms": float(np.percentile(values, 95))}
        step.metrics = compute_all(sample)
        values, counts = np.unique(outcome_str[idx].astype(str), return_counts=True)
        step.outcomes = {str(v): int(c) for v, c in zip(values, counts)}
        if parts is not None:
            step.time_split = _split_of(parts, idx, ok)
        step.client_split = _client_split_of(idx, ok, e2e, ttft, tps, overlap)
    if fail_frame is not None:
        _failure_details(steps, fail_frame)
    return steps


def sample_of(idx, ok, cut, e2e, ttft, tps, tokens, window_s, dropped=None) -> Sample:
    ok_idx = idx[ok[idx]]
    e, t, r = e2e[ok_idx], ttft[ok_idx], tps[ok_idx]
    return Sample(
        requests=len(idx), cut_short=int(cut[idx].sum()), ok=len(ok_idx),
        dropped=int(dropped[idx].sum()) if dropped is not None else 0,
        e2e_ms=e[~np.isnan(e)], ttft_ms=t[~np.isnan(t)], tokens_per_s=r[~np.isnan(r)],
        ok_output_tokens=float(np.nansum(tokens[ok_idx])), window_s=window_s,
    )


GROWTH_MS = 500.0  # a rate step's wait must rise at least this much from its first third to its last ...
GOODPUT_SHARE = 0.9  # ... while the server completes fewer than this share of the requests sent: the queue grows


def queue_trend(idx, start, parts, ttft, ok, sample: Sample, window_s: float) -> dict | None:
    """Whether a rate step's queue grows without bound: its successful requests in three thirds by start
    time, the median wait of each (the server's queue wait where it reports one, else TTFT); growing when
    the wait rises third over third by ``GROWTH_MS`` or more in all while the step's completions (Req/s)
    stay below ``GOODPUT_SHARE`` of the requests sent (the achieved rate): more arrive than leave."""
    use = idx[ok[idx]]
    queue = parts["queue_wait_ms"] if parts is not None else None
    if queue is not None and np.isfinite(queue[use]).all() and len(use):
        wait, source = queue[use], "queue wait"
    else:
        wait, source = ttft[use], "TTFT"
    keep = np.isfinite(wait) & np.isfinite(start[use])
    wait, when = wait[keep], start[use][keep]
    if len(wait) < 9:
        return None
    order = np.argsort(when, kind="stable")
    thirds = [float(np.median(part)) for part in np.array_split(wait[order], 3)]
    sent = sample.requests - sample.dropped
    achieved = sent / window_s if window_s > 0 else math.nan
    goodput = sample.completed / window_s if window_s > 0 else math.nan
    rising = thirds[0] <= thirds[1] <= thirds[2] and thirds[2] - thirds[0] >= GROWTH_MS
    behind = is_number(achieved) and is_number(goodput) and goodput < GOODPUT_SHARE * achieved
    return {"thirds_ms": thirds, "source": source, "growing": bool(rising and behind), "rising": bool(rising),
            "goodput_share": goodput / achieved if is_number(achieved) and achieved > 0 and is_number(goodput) else None}


def _time_parts(counted, ok) -> dict | None:
    """Arrays of each time part (nan where not measured), or None when no request has server durations."""
    evals = counted["eval_ms"].to_numpy(dtype="float64")
    total = counted["server_total_ms"].to_numpy(dtype="float64")
    if len(evals) == 0 or not np.isfinite(evals[ok]).any():
        return None
    load = counted["load_ms"].to_numpy(dtype="float64")
    prompt = counted["prompt_eval_ms"].to_numpy(dtype="float64")
    queue = counted["queue_wait_ms"].to_numpy(dtype="float64")
    derived = total - np.nan_to_num(load) - np.nan_to_num(prompt) - evals
    queue = np.where(np.isnan(queue), np.clip(derived, 0, None), queue)
    outside = np.clip(counted["e2e_ms"].to_numpy(dtype="float64") - total, 0, None)
    return {"queue_wait_ms": queue, "load_ms": np.nan_to_num(load), "prompt_eval_ms": np.nan_to_num(prompt),
            "eval_ms": evals, "outside_ms": outside, "_has": np.isfinite(evals)}


def _split_of(parts: dict, idx, ok) -> dict | None:
    use = idx[ok[idx] & parts["_has"][idx]]
    if len(use) == 0:
        return None
    split = {"n": int(len(use))}
    for key, _, _ in TIME_PARTS:
        values = parts[key][use]
        values = values[~np.isnan(values)]
        split[key] = float(np.median(values)) if len(values) else 0.0
    return split


def _client_split_of(idx, ok, e2e, ttft, tps, overlap) -> dict | None:
    """The step's CLIENT_SPLIT over its successful requests with a TTFT (plus their mean TTFT and counts)."""
    use = idx[ok[idx]]
    use = use[np.isfinite(ttft[use]) & np.isfinite(e2e[use])]
    if len(use) == 0:
        return None
    first = float(np.median(ttft[use]))
    rest = float(np.median(np.clip(e2e[use] - ttft[use], 0, None)))

    def mean(values):
        values = values[use]
        values = values[np.isfinite(values)]
        return float(np.mean(values)) if len(values) else math.nan

    ahead, left, along, holding, queue = overlap
    in_flight = ahead[idx]
    in_flight = in_flight[np.isfinite(in_flight)] + 1
    q = queue[use]
    if np.isfinite(q).any():
        waited, waited_from = int((q[np.isfinite(q)] > WAITED_MS).sum()), "queue wait"
    else:
        waited, waited_from = int((ttft[use] - ttft[use].min() > WAITED_MS).sum()), "TTFT"
    return {
        "n": int(len(use)), "n_with_rate": int(np.isfinite(tps[use]).sum()),
        "ttft_ms": first, "streaming_ms": rest,
        "ttft_share": first / (first + rest) if first + rest > 0 else math.nan,
        "requests_ahead": mean(ahead), "ahead_left_ms": mean(left), "streams_alongside": mean(along),
        "holding_at_send": mean(holding),
        "in_flight_p95": float(np.percentile(in_flight, 95)) if len(in_flight) else math.nan,
        "waited": waited, "waited_from": waited_from,
        "ttft_mean_ms": float(np.mean(ttft[use])),
    }


def _failure_details(steps: list[Step], fail) -> None:
    by_stage = {s.stage: s for s in steps}
    fail = fail.assign(outcome=fail["outcome"].astype(str), error=fail["error"].astype(object).fillna("").astype(str))
    status = fail["http_status"].fillna(0).astype("int64")
    for (stage, outcome, code), count in fail.assign(http_status=status).groupby(
            ["stage", "outcome", "http_status"], observed=True).size().items():
        step = by_stage.get(int(stage))
        if step is not None and count:
            step.statuses.setdefault(outcome, {})[int(code)] = int(count)
    errors = fail[fail["error"] != ""].groupby(["stage", "outcome", "error"], observed=True).size()
    errors = errors[errors > 0].sort_values(ascending=False, kind="stable")
    for (stage, outcome, text), count in errors.items():
        step = by_stage.get(int(stage))
        if step is None:
            continue
        step.outcome_errors.setdefault(outcome, str(text))
        if len(step.top_errors) < 3:
            step.top_errors.append((str(text), int(count)))


def build_class_rows(frame, steps: list[Step]) -> list[dict]:
    """Per step × user class: {"stage", "users", "user_class", "metrics"} (settle excluded)."""
    import pandas as pd

    settle = frame["settle"].to_numpy(dtype=bool)
    counted = frame.loc[~settle] if settle.any() else frame
    if len(counted) == 0:
        return []
    classes = counted["user_class"].astype(object).fillna("").astype(str).to_numpy()
    classes_all = frame["user_class"].astype(object).fillna("").astype(str).to_numpy()
    names = sorted(set(classes.tolist()))
    if len(names) < 2:
        return []
    stage = counted["stage"].to_numpy(dtype="float64")
    outcome = counted["outcome"].astype(object).to_numpy()
    ok, cut, dropped = outcome == contract.OK, outcome == contract.CUT_SHORT, outcome == contract.DROPPED
    e2e = counted["e2e_ms"].to_numpy(dtype="float64")
    ttft = counted["ttft_ms"].to_numpy(dtype="float64")
    tps = counted["tokens_per_s"].to_numpy(dtype="float64")
    tokens = counted["output_tokens"].to_numpy(dtype="float64")
    code = np.searchsorted(np.array(names, dtype=object), classes)
    key = stage * (len(names) + 1) + code
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    arrived = record_arrivals(frame)
    codes_all = pd.Categorical(classes_all, categories=names).codes.astype(np.int64)
    codes_all[codes_all < 0] = len(names)  # a class only in the settle window: a group of its own
    ends_by = [ok_ends(frame, codes_all == i) for i in range(len(names))]
    rows = []
    for step in steps:
        w_lo, w_hi = step_window(step)
        tokens_by = arrived.in_window_by(w_lo, w_hi, codes_all, len(names) + 1)
        for i, name in enumerate(names):
            k = step.stage * (len(names) + 1) + i
            lo, hi = np.searchsorted(sorted_key, [k, k + 0.5])
            if hi > lo:
                sample = sample_of(order[lo:hi], ok, cut, e2e, ttft, tps, tokens, step.window_s, dropped)
                sample.tokens_in_window, sample.completed = float(tokens_by[i]), count_in(ends_by[i], w_lo, w_hi)
                sample.offered_rate = step.rate
                rows.append({"stage": step.stage, "users": step.users, "rate": step.rate, "user_class": name or "?",
                             "metrics": compute_all(sample)})
    return rows
